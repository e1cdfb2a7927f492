//! The full-screen view of `stoke top` (ratatui) and its keys.

use std::time::Duration;

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Row as TableRow, Table as TableWidget};
use ratatui::Frame;

use super::plain::{cells, header_line, COLUMNS};
use super::table::{SortBy, Table, ViewOptions};
use super::Header;

/// What a key asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    Sort(SortBy),
    Pause,
    Kernel,
    Threads,
    Reset,
    Scroll(isize),
    ScrollTo(usize),
}

/// The key waiting, if any (waits at most `timeout`).
pub fn key(timeout: Duration) -> Option<Action> {
    if !event::poll(timeout).ok()? {
        return None;
    }
    match event::read().ok()? {
        Event::Key(key) if key.kind != KeyEventKind::Release => action(key),
        _ => None,
    }
}

fn action(key: KeyEvent) -> Option<Action> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    Some(match key.code {
        KeyCode::Char('c') | KeyCode::Char('d') if ctrl => Action::Quit,
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        KeyCode::Char('s') => Action::Sort(SortBy::SelfTime),
        KeyCode::Char('t') => Action::Sort(SortBy::Total),
        KeyCode::Char('p') | KeyCode::Char(' ') => Action::Pause,
        KeyCode::Char('k') => Action::Kernel,
        KeyCode::Char('T') | KeyCode::Char('h') => Action::Threads,
        KeyCode::Char('r') => Action::Reset,
        KeyCode::Up => Action::Scroll(-1),
        KeyCode::Down => Action::Scroll(1),
        KeyCode::PageUp => Action::Scroll(-20),
        KeyCode::PageDown => Action::Scroll(20),
        KeyCode::Home => Action::ScrollTo(0),
        KeyCode::End => Action::ScrollTo(usize::MAX),
        _ => return None,
    })
}

/// Draws the header, the table from row `scroll` and the key help.
pub fn draw(
    frame: &mut Frame<'_>,
    header: &Header,
    table: &Table,
    view: ViewOptions,
    paused: bool,
    scroll: usize,
) {
    let [top, body, help] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let sort = match view.sort {
        SortBy::SelfTime => "self",
        SortBy::Total => "total",
    };
    let state = format!(
        "last {:.1} s: {} samples · since start: {} · sorted by {sort}{}{}{}",
        header.interval.as_secs_f64(),
        table.interval_samples,
        table.all_samples,
        if view.kernel { "" } else { " · kernel hidden" },
        if view.per_thread {
            " · per thread"
        } else {
            ""
        },
        if paused { " · PAUSED" } else { "" },
    );
    frame.render_widget(
        Paragraph::new(vec![
            Line::styled(
                header_line(header),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Line::raw(header.backend.as_str()),
            Line::raw(state),
        ]),
        top,
    );
    let mut columns = COLUMNS;
    if view.per_thread {
        columns[6] = "THREAD";
    }
    let titles = TableRow::new(columns).style(Style::new().add_modifier(Modifier::REVERSED));
    let visible = body.height.saturating_sub(1) as usize;
    let rows = table
        .rows
        .iter()
        .skip(scroll)
        .take(visible)
        .map(|row| TableRow::new(cells(row, table)));
    let widths = [
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(24),
        Constraint::Min(10),
    ];
    frame.render_widget(TableWidget::new(rows, widths).header(titles), body);
    frame.render_widget(
        Paragraph::new(Line::styled(
            "q quit · s/t sort by self/total · p pause · k kernel frames · T threads · r reset · ↑↓ scroll",
            Style::new().add_modifier(Modifier::DIM),
        )),
        help,
    );
}
