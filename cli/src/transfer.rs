//! `rawstor import` and `export`: stream between a file and an object,
//! keeping holes (all-zero ranges are discarded, not written), with a
//! progress bar when stderr is a terminal.

use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};

use indicatif::{ProgressBar, ProgressStyle};

use rawstor::Target;

use crate::{CliResult, Failure};

/// Bytes moved per step.
const STEP_BYTES: usize = 1 << 20;

/// A progress bar on stderr (indicatif), drawn only when stderr is a
/// terminal; finished when dropped.
pub struct Progress(ProgressBar);

impl Progress {
    /// A bar for `total` bytes.
    pub fn new(total: u64) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::new(total)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "[{bar:30}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} ",
            )
            .expect("a valid template")
            .progress_chars("# "),
        );
        Self(bar)
    }

    /// Moves the bar to `done` bytes.
    pub fn update(&self, done: u64) {
        self.0.set_position(done);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish();
    }
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> Failure {
    move |e| Failure::Runtime(rawstor::Error::io(what, e))
}

fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// `rawstor import FILE TARGET`.
pub fn import(path: &str, target: &Target) -> CliResult {
    let mut input: Box<dyn Read> = if path == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(path).map_err(io_err(format!("cannot open {path}")))?)
    };
    let file_len = if path == "-" {
        None
    } else {
        std::fs::metadata(path).ok().map(|m| m.len())
    };
    let object = crate::instance()?.open(target)?;
    let size = object.size();
    if let Some(len) = file_len.filter(|&len| len > size) {
        return Err(Failure::Usage(format!(
            "import: {path} holds {len} bytes, more than the object's {size}: resize the object first"
        )));
    }
    let progress = Progress::new(file_len.unwrap_or(size));
    let mut buf = vec![0u8; STEP_BYTES];
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut input, &mut buf).map_err(io_err(format!("cannot read {path}")))?;
        if n == 0 {
            break;
        }
        if offset + n as u64 > size {
            return Err(Failure::Usage(format!(
                "import: input is larger than the object ({size} bytes)"
            )));
        }
        // A block-aligned all-zero step is discarded so holes stay holes.
        if buf[..n].iter().all(|&b| b == 0) && n % 4096 == 0 {
            object.discard(offset, n as u64)?;
        } else {
            object.write_at(&buf[..n], offset)?;
        }
        offset += n as u64;
        progress.update(offset);
    }
    object.close()?;
    Ok(())
}

/// `rawstor export TARGET FILE`.
pub fn export(target: &Target, path: &str) -> CliResult {
    let object = crate::instance()?.open(target)?;
    let size = object.size();
    let to_stdout = path == "-";
    let mut file = if to_stdout {
        None
    } else {
        Some(File::create(path).map_err(io_err(format!("cannot create {path}")))?)
    };
    let mut stdout = std::io::stdout().lock();
    let progress = Progress::new(size);
    let mut buf = vec![0u8; STEP_BYTES];
    let mut offset = 0u64;
    while offset < size {
        let n = STEP_BYTES.min((size - offset) as usize);
        object.read_at(&mut buf[..n], offset)?;
        match file.as_mut() {
            // Leave zero steps as holes in a regular file.
            Some(file) if buf[..n].iter().all(|&b| b == 0) => {
                file.seek(SeekFrom::Current(n as i64))
                    .map_err(io_err(format!("cannot seek {path}")))?;
            }
            Some(file) => file
                .write_all(&buf[..n])
                .map_err(io_err(format!("cannot write {path}")))?,
            None => stdout
                .write_all(&buf[..n])
                .map_err(io_err("cannot write stdout".into()))?,
        }
        offset += n as u64;
        progress.update(offset);
    }
    if let Some(file) = file {
        file.set_len(size)
            .and_then(|()| file.sync_all())
            .map_err(io_err(format!("cannot finish {path}")))?;
    }
    if to_stdout {
        stdout
            .flush()
            .map_err(io_err("cannot write stdout".into()))?;
    }
    object.close()?;
    Ok(())
}
