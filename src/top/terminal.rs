//! The terminal of `stoke top`: raw mode, the alternate screen and a hidden
//! cursor while the view runs, restored on every way out: quitting, a
//! signal (the loop ends and the guard drops), an error and a panic (the
//! panic hook restores it before the message is printed).

use std::io::Stdout;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use crossterm::{cursor, execute, terminal};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

/// Whether the terminal is in the view's state (to restore it once).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The terminal in the view's state; restored when dropped.
pub struct Screen {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    /// Enters raw mode and the alternate screen, hides the cursor.
    pub fn enter() -> anyhow::Result<Screen> {
        install_panic_restore();
        terminal::enable_raw_mode().context("putting the terminal in raw mode")?;
        ACTIVE.store(true, Ordering::SeqCst);
        let mut stdout = std::io::stdout();
        if let Err(e) = execute!(stdout, terminal::EnterAlternateScreen, cursor::Hide) {
            restore();
            return Err(anyhow::Error::new(e).context("entering the alternate screen"));
        }
        let terminal = match Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(terminal) => terminal,
            Err(e) => {
                restore();
                return Err(anyhow::Error::new(e).context("setting up the terminal"));
            }
        };
        Ok(Screen { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves the alternate screen, shows the cursor and ends raw mode, once.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = execute!(
            std::io::stdout(),
            terminal::LeaveAlternateScreen,
            cursor::Show
        );
        let _ = terminal::disable_raw_mode();
    }
}

/// Restores the terminal before the panic message, so that it is readable.
fn install_panic_restore() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}
