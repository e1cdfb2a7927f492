//! Prints the Python frames of every thread of a process: `pystack PID`.

use stoke_python::PyStack;

fn main() {
    let Some(pid) = std::env::args().nth(1).and_then(|a| a.parse::<i32>().ok()) else {
        eprintln!("usage: pystack PID");
        std::process::exit(2);
    };
    let mut interp = match stoke_python::detect(pid, &mut |p| {
        std::fs::read(p).map(|bytes| std::sync::Arc::new(bytes) as stoke_python::FileBytes)
    }) {
        Ok(Some(i)) => i,
        Ok(None) => {
            eprintln!("pystack: no CPython in process {pid}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("pystack: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "{} (CPython {:?})",
        interp.path.display(),
        interp.reader.version()
    );
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for task in tasks.flatten() {
        let Ok(tid) = task.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        println!("thread {tid}:");
        match interp.reader.stack(tid, None) {
            PyStack::Evals(evals) => {
                for (i, eval) in evals.iter().enumerate() {
                    for f in eval {
                        println!("  [{i}] {} ({}:{:?})", f.code.qualname, f.code.file, f.line);
                    }
                }
            }
            other => println!("  {other:?}"),
        }
    }
}
