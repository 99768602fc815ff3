//! Writes the catalog's JSON Schema files into `schemas/json/` (or `--dir DIR`) and their
//! TypeScript declarations into `schemas/ts/` (or `--ts-dir DIR`).
//!
//! `--check` only compares and exits 1 when the files differ from the code. Breaking changes to
//! event types already in the directory are refused (exit 1) unless `--allow-breaking` is given;
//! they belong in a new event type such as `order.created.v2`.

use std::path::PathBuf;
use std::process::ExitCode;

use conveyor_schemas::export;

fn main() -> ExitCode {
    let mut dir = export::default_dir();
    let mut ts_dir = conveyor_schemas::typescript::default_dir();
    let (mut check, mut allow_breaking) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--allow-breaking" => allow_breaking = true,
            "--dir" => match args.next() {
                Some(d) => dir = PathBuf::from(d),
                None => {
                    eprintln!("--dir needs a directory");
                    return ExitCode::from(2);
                }
            },
            "--ts-dir" => match args.next() {
                Some(d) => ts_dir = PathBuf::from(d),
                None => {
                    eprintln!("--ts-dir needs a directory");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!(
                    "usage: export-schemas [--check] [--allow-breaking] [--dir DIR] [--ts-dir DIR]"
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}; see --help");
                return ExitCode::from(2);
            }
        }
    }
    let result = if check {
        export::check_dir(&dir)
    } else {
        export::write_dir(&dir, allow_breaking)
    };
    let ts = if check {
        conveyor_schemas::typescript::check_dir(&ts_dir)
    } else {
        conveyor_schemas::typescript::write_dir(&ts_dir)
    };
    let result = match (result, ts) {
        (Ok(mut report), Ok(ts)) => {
            report.changed.extend(ts.changed);
            report.added.extend(ts.added);
            report.removed.extend(ts.removed);
            Ok(report)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match result {
        Ok(report) if check => {
            if report.is_clean() && report.incompatibilities.is_empty() {
                println!("{} and {} match the code", dir.display(), ts_dir.display());
                ExitCode::SUCCESS
            } else {
                print!("{report}");
                println!("run `python3 dev.py schemas` to regenerate");
                ExitCode::FAILURE
            }
        }
        Ok(report) => {
            print!("{report}");
            let n = conveyor_schemas::catalog().len();
            println!(
                "wrote {n} event types to {} and {}",
                dir.display(),
                ts_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
