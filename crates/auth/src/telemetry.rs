//! Logging: human-readable lines, or one JSON object per line with `log.format = "json"`.
//! Logs go to standard error, so standard output stays clean for `--json` output.
//!
//! A request does not make a system call to log: its line is appended to a buffer that a
//! thread of its own writes out in one call, at most [`FLUSH_AFTER`] after the first line
//! arrived. Nothing is dropped: when the buffer holds [`MAX_BUFFERED`] bytes, the thread
//! that logs writes it out itself (and waits for standard error); [`Logs`] writes out
//! what is left when it is dropped, and so does a panic before its message.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogConfig, LogFormat};

/// How long a line may wait in the buffer: lines that arrive meanwhile share its write.
pub const FLUSH_AFTER: Duration = Duration::from_millis(20);
/// Above this many bytes waiting, a logging thread writes them out itself.
pub const MAX_BUFFERED: usize = 256 * 1024;

/// Installs the subscriber. Keep the answer until the process ends: dropping it writes out
/// the lines still buffered.
#[must_use = "dropping Logs at once writes every later line unbuffered"]
pub fn init(config: &LogConfig) -> Logs {
    init_writing_to(config, std::io::stderr(), std::io::stderr().is_terminal())
}

/// As [`init`], with the lines going to `sink` (`ansi`: colours in the human format).
/// The request benchmark logs this way into nothing, as the server logs to a file.
#[must_use = "dropping Logs at once writes every later line unbuffered"]
pub fn init_writing_to(config: &LogConfig, sink: impl Write + Send + 'static, ansi: bool) -> Logs {
    let logs = Logs::new(sink);
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(logs.writer());
    // `try_init`: a process that builds several apps (the demo) initialises once.
    let installed = match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Human => builder.with_ansi(ansi).try_init(),
    };
    if installed.is_ok() {
        let buffer = logs.writer();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            buffer.flush_unless_busy();
            previous(info);
        }));
    }
    logs
}

/// The buffer's writer thread; dropping this stops it after it wrote everything out.
pub struct Logs {
    writer: LogWriter,
    thread: Option<JoinHandle<()>>,
}

impl Logs {
    /// A buffer in front of `sink`, and the thread that writes it out.
    pub fn new(sink: impl Write + Send + 'static) -> Self {
        let writer = LogWriter(Arc::new(Shared {
            state: Mutex::new(State {
                lines: Vec::new(),
                closed: false,
            }),
            sink: Mutex::new(Box::new(sink)),
            arrived: Condvar::new(),
        }));
        let shared = writer.clone();
        let thread = std::thread::Builder::new()
            .name("tobira-log".to_owned())
            .spawn(move || shared.0.write_out_until_closed())
            .ok();
        if thread.is_none() {
            // No thread: every line is written at once.
            writer.0.lock_state().closed = true;
        }
        Self { writer, thread }
    }

    /// What the subscriber writes to.
    pub fn writer(&self) -> LogWriter {
        self.writer.clone()
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        self.writer.0.lock_state().closed = true;
        self.writer.0.arrived.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.writer.flush_now();
    }
}

/// Appends each line to the shared buffer (tracing's `fmt` writes a line in one call).
#[derive(Clone)]
pub struct LogWriter(Arc<Shared>);

struct Shared {
    state: Mutex<State>,
    /// Held while writing, so that lines reach the sink in the order they were logged.
    sink: Mutex<Box<dyn Write + Send>>,
    arrived: Condvar,
}

struct State {
    lines: Vec<u8>,
    /// No writer thread any more: lines are written at once.
    closed: bool,
}

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while appending leaves the bytes as they were: keep logging.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_sink(&self) -> MutexGuard<'_, Box<dyn Write + Send>> {
        self.sink.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes what is buffered and writes it; the sink is locked before the buffer is
    /// released, so a later line can never overtake it.
    fn write_out(&self, state: MutexGuard<'_, State>, spare: &mut Vec<u8>) {
        Self::write(state, self.lock_sink(), spare);
    }

    fn write(
        mut state: MutexGuard<'_, State>,
        mut sink: MutexGuard<'_, Box<dyn Write + Send>>,
        spare: &mut Vec<u8>,
    ) {
        std::mem::swap(&mut state.lines, spare);
        drop(state);
        if !spare.is_empty() {
            // Standard error gone: there is nowhere left to say so.
            let _ = sink.write_all(spare).and_then(|()| sink.flush());
        }
        spare.clear();
        if spare.capacity() > MAX_BUFFERED {
            *spare = Vec::new();
        }
    }

    fn write_out_until_closed(&self) {
        let mut spare = Vec::new();
        loop {
            let mut state = self.lock_state();
            while state.lines.is_empty() && !state.closed {
                state = self.arrived.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.closed {
                self.write_out(state, &mut spare);
                return;
            }
            drop(state);
            // Let the lines of the requests being served now join this one.
            std::thread::sleep(FLUSH_AFTER);
            let state = self.lock_state();
            self.write_out(state, &mut spare);
        }
    }
}

impl LogWriter {
    /// Writes out whatever is buffered, now, on this thread.
    pub fn flush_now(&self) {
        let state = self.0.lock_state();
        self.0.write_out(state, &mut Vec::new());
    }

    /// As `flush_now`, unless this thread (panicking) may hold a lock already.
    fn flush_unless_busy(&self) {
        if let (Ok(state), Ok(sink)) = (self.0.state.try_lock(), self.0.sink.try_lock()) {
            Shared::write(state, sink, &mut Vec::new());
        }
    }
}

impl Write for LogWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = self.0.lock_state();
        let first = state.lines.is_empty();
        state.lines.extend_from_slice(line);
        if state.closed || state.lines.len() >= MAX_BUFFERED {
            self.0.write_out(state, &mut Vec::new());
        } else if first {
            drop(state);
            self.0.arrived.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read, counting the writes it receives.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut inner = self.0.lock().unwrap();
            inner.0.extend_from_slice(buf);
            inner.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().0.clone()).unwrap()
        }
        fn writes(&self) -> usize {
            self.0.lock().unwrap().1
        }
    }

    #[test]
    fn every_line_arrives_in_order_and_lines_share_writes() {
        let sink = Sink::default();
        let logs = Logs::new(sink.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut writer = logs.writer();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        writer
                            .write_all(format!("thread {t} line {i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(logs);
        let text = sink.text();
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("thread {t} line ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..2_000).collect::<Vec<_>>(), "thread {t}");
        }
        assert!(
            sink.writes() < 8_000 / 10,
            "8000 lines in {} writes",
            sink.writes()
        );
    }

    #[test]
    fn a_line_waits_at_most_a_moment_and_a_full_buffer_is_written_at_once() {
        let sink = Sink::default();
        let logs = Logs::new(sink.clone());
        let mut writer = logs.writer();
        writer.write_all(b"one line\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.text().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the line was never written"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.text(), "one line\n");

        // A burst of twice the buffer: whatever the writer thread took meanwhile, the
        // logging thread wrote the rest beyond MAX_BUFFERED itself, in order.
        let line = vec![b'x'; 1023];
        let mut expected = String::from("one line\n");
        for _ in 0..(2 * MAX_BUFFERED / 1024) {
            writer.write_all(&line).unwrap();
            writer.write_all(b"\n").unwrap();
            expected.push_str(&"x".repeat(1023));
            expected.push('\n');
        }
        assert!(sink.text().len() >= MAX_BUFFERED, "written at once");
        drop(logs);
        assert_eq!(sink.text(), expected);
        // After the thread stopped, a line goes straight out.
        writer.write_all(b"late\n").unwrap();
        assert!(sink.text().ends_with("late\n"));
    }
}
