//! How `forge build` shows its progress, as buildx does: `plain` (one line per event,
//! `#N name` / `#N CACHED` / `#N DONE 0.2s`, for CI logs), `tty` (a live view redrawn in
//! place: `[+] Building 3.2s (5/8)`, one ` => ` line per step with its time, the last
//! output lines of running steps), `quiet`; `auto` is `tty` when standard error is a
//! terminal, else `plain`.

use forge_build::progress::{Event, Progress};
use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The renderer `--progress` asked for.
pub enum BuildProgress {
    Plain(Plain),
    Tty(Tty),
}

impl BuildProgress {
    /// `mode` is `--progress`'s value; `quiet` (`-q` or `--progress=quiet`) shows nothing.
    pub fn new(mode: &str, quiet: bool) -> Result<BuildProgress, String> {
        let tty = match mode {
            "auto" => std::io::stderr().is_terminal(),
            "tty" => true,
            "plain" | "quiet" | "rawjson" => false,
            other => {
                return Err(format!(
                    "invalid progress mode \"{other}\" (auto, tty, plain or quiet)"
                ))
            }
        };
        Ok(if tty && !quiet {
            BuildProgress::Tty(Tty::start())
        } else {
            BuildProgress::Plain(Plain {
                start: Instant::now(),
                numbers: Mutex::new(BTreeMap::new()),
                quiet: quiet || mode == "quiet",
            })
        })
    }

    /// Stops the live view (drawing its final frame, `FINISHED` when `ok`) before the
    /// command prints its result.
    pub fn finish(&self, ok: bool) {
        if let BuildProgress::Tty(t) = self {
            t.finish(ok);
        }
    }

    /// A build-level line after the steps (`writing image sha256:… done`).
    pub fn result_line(&self, line: &str) {
        match self {
            BuildProgress::Plain(p) if !p.quiet => eprintln!("#0 {line}"),
            BuildProgress::Plain(_) => {}
            BuildProgress::Tty(_) => eprintln!(" => => {line}"),
        }
    }
}

impl Progress for BuildProgress {
    fn event(&self, event: Event) {
        match self {
            BuildProgress::Plain(p) => p.event(event),
            BuildProgress::Tty(t) => t.event(event),
        }
    }
}

/// BuildKit's plain progress. Vertices are numbered in the order they are first seen.
pub struct Plain {
    start: Instant,
    numbers: Mutex<BTreeMap<usize, (usize, Instant)>>,
    quiet: bool,
}

impl Plain {
    fn number(&self, vertex: usize) -> (usize, Instant) {
        let mut n = self.numbers.lock().expect("progress lock");
        let next = n.len() + 1;
        *n.entry(vertex).or_insert((next, Instant::now()))
    }
}

impl Progress for Plain {
    fn event(&self, event: Event) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = match event {
            Event::Started { vertex, name } => {
                let (n, _) = self.number(vertex);
                writeln!(err, "#{n} {name}")
            }
            Event::Cached { vertex, name } => {
                let (n, _) = self.number(vertex);
                writeln!(err, "#{n} {name}\n#{n} CACHED")
            }
            Event::Output { vertex, line } => {
                let (n, t) = self.number(vertex);
                writeln!(err, "#{n} {:.3} {line}", t.elapsed().as_secs_f64())
            }
            Event::Done {
                vertex, elapsed, ..
            } => {
                let (n, _) = self.number(vertex);
                writeln!(err, "#{n} DONE {:.1}s", elapsed.as_secs_f64())
            }
            Event::Failed {
                vertex, message, ..
            } => {
                let (n, _) = self.number(vertex);
                writeln!(err, "#{n} ERROR: {message}")
            }
            Event::Info(msg) => {
                writeln!(err, "#0 {msg} {:.1}s", self.start.elapsed().as_secs_f64())
            }
        };
    }
}

/// Output lines of a running step kept on screen, as buildx shows them.
const TTY_OUTPUT_LINES: usize = 6;
/// How often the live view's timers are redrawn.
const TTY_TICK: Duration = Duration::from_millis(100);

#[derive(Clone, Copy)]
enum StepState {
    Running(Instant),
    Done(Duration),
    Cached,
    Failed(Duration),
}

struct TtyStep {
    name: String,
    state: StepState,
    output: VecDeque<String>,
}

struct TtyView {
    start: Instant,
    /// Steps in the order they were first seen, by vertex.
    steps: Vec<TtyStep>,
    index: BTreeMap<usize, usize>,
    /// Build-level messages, shown as steps of their own.
    info: Vec<(String, Instant)>,
    /// Lines of the last frame, to move back over.
    drawn: usize,
    finished: Option<bool>,
}

/// The live view: a frame redrawn in place on every event and every [`TTY_TICK`].
pub struct Tty {
    view: Arc<Mutex<TtyView>>,
    stop: Arc<AtomicBool>,
    ticker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Tty {
    fn start() -> Tty {
        let view = Arc::new(Mutex::new(TtyView {
            start: Instant::now(),
            steps: Vec::new(),
            index: BTreeMap::new(),
            info: Vec::new(),
            drawn: 0,
            finished: None,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let view = view.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TTY_TICK);
                    if let Ok(mut v) = view.lock() {
                        if v.finished.is_none() {
                            v.redraw();
                        }
                    }
                }
            })
        };
        Tty {
            view,
            stop,
            ticker: Mutex::new(Some(ticker)),
        }
    }

    fn finish(&self, ok: bool) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
        if let Ok(mut v) = self.view.lock() {
            if v.finished.is_none() {
                v.finished = Some(ok);
                v.redraw();
            }
        }
    }

    fn event(&self, event: Event) {
        let Ok(mut v) = self.view.lock() else { return };
        let step = |v: &mut TtyView, vertex: usize, name: Option<String>| -> usize {
            if let Some(&i) = v.index.get(&vertex) {
                if let Some(name) = name {
                    v.steps[i].name = name;
                }
                return i;
            }
            v.steps.push(TtyStep {
                name: name.unwrap_or_default(),
                state: StepState::Running(Instant::now()),
                output: VecDeque::new(),
            });
            let i = v.steps.len() - 1;
            v.index.insert(vertex, i);
            i
        };
        match event {
            Event::Started { vertex, name } => {
                let i = step(&mut v, vertex, Some(name));
                v.steps[i].state = StepState::Running(Instant::now());
            }
            Event::Cached { vertex, name } => {
                let i = step(&mut v, vertex, Some(name));
                v.steps[i].state = StepState::Cached;
            }
            Event::Output { vertex, line } => {
                let i = step(&mut v, vertex, None);
                let out = &mut v.steps[i].output;
                if out.len() == TTY_OUTPUT_LINES {
                    out.pop_front();
                }
                out.push_back(line);
            }
            Event::Done {
                vertex, elapsed, ..
            } => {
                let i = step(&mut v, vertex, None);
                v.steps[i].state = StepState::Done(elapsed);
            }
            Event::Failed {
                vertex, elapsed, ..
            } => {
                let i = step(&mut v, vertex, None);
                v.steps[i].state = StepState::Failed(elapsed);
            }
            Event::Info(msg) => v.info.push((msg, Instant::now())),
        }
        v.redraw();
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl TtyView {
    fn frame(&self, width: usize) -> Vec<String> {
        let total = self.steps.len();
        let complete = self
            .steps
            .iter()
            .filter(|s| !matches!(s.state, StepState::Running(_)))
            .count();
        let mut lines = vec![format!(
            "[+] Building {:.1}s ({complete}/{total}){}",
            self.start.elapsed().as_secs_f64(),
            match self.finished {
                Some(true) => " FINISHED",
                Some(false) => " ERROR",
                None => "",
            }
        )];
        let timed = |text: String, secs: Option<f64>| -> String {
            let time = secs.map(|s| format!("{s:.1}s")).unwrap_or_default();
            let room = width.saturating_sub(time.len() + 1);
            let text: String = text.chars().take(room).collect();
            let pad = room.saturating_sub(text.chars().count());
            format!("{text}{} {time}", " ".repeat(pad))
        };
        for s in &self.steps {
            let (prefix, secs) = match s.state {
                StepState::Running(t) => (" => ", Some(t.elapsed().as_secs_f64())),
                StepState::Done(d) => (" => ", Some(d.as_secs_f64())),
                StepState::Cached => (" => CACHED ", Some(0.0)),
                StepState::Failed(d) => (" => ERROR ", Some(d.as_secs_f64())),
            };
            lines.push(timed(format!("{prefix}{}", s.name), secs));
            let show_output = matches!(s.state, StepState::Running(_) | StepState::Failed(_));
            if show_output {
                for l in &s.output {
                    lines.push(timed(format!(" => => # {l}"), None));
                }
            }
        }
        for (msg, t) in &self.info {
            lines.push(timed(format!(" => {msg}"), Some(t.elapsed().as_secs_f64())));
        }
        lines
    }

    fn redraw(&mut self) {
        let (width, height) = terminal_size();
        let mut lines = self.frame(width.max(20));
        // A frame taller than the screen cannot be redrawn in place: keep the header
        // and the newest lines, as buildx does.
        let room = height.saturating_sub(1).max(3);
        if lines.len() > room {
            let skip = lines.len() - room;
            lines.drain(1..=skip);
        }
        let mut out = String::new();
        if self.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", self.drawn));
        }
        for l in &lines {
            out.push_str("\r\x1b[2K");
            out.push_str(l);
            out.push('\n');
        }
        out.push_str("\x1b[J");
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
        self.drawn = lines.len();
    }
}

nix::ioctl_read_bad!(window_size, nix::libc::TIOCGWINSZ, nix::libc::winsize);

/// Columns and rows of the terminal on standard error (80×24 when it cannot be told).
fn terminal_size() -> (usize, usize) {
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we own; fd 2 stays open.
    match unsafe { window_size(2, &mut ws) } {
        Ok(_) if ws.ws_col > 0 && ws.ws_row > 0 => (usize::from(ws.ws_col), usize::from(ws.ws_row)),
        _ => (80, 24),
    }
}
