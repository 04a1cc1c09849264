//! The epoch ticker: the clock of guest CPU deadlines.
//!
//! A thread bumps the engine's epoch every [`limits::EPOCH_TICK`] while
//! guest code may be running. A waypoint is idle most of its life, and a
//! thread waking a thousand times a second costs CPU on every node for
//! nothing, so the ticker parks once no hook call has been in flight for
//! [`IDLE_TICKS_BEFORE_PARK`] ticks and the next call wakes it. Deadline
//! precision is unchanged: a call's deadline counts ticks from the call's
//! start, and the first tick after a wake-up comes one period later, as it
//! would have anyway.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::Thread;

use wasmtime::{Engine, EngineWeak};

use super::limits;

/// Ticks without any call in flight before the ticker parks (100 ms).
pub const IDLE_TICKS_BEFORE_PARK: u32 = 100;

#[derive(Debug, Default)]
struct State {
    active: AtomicUsize,
    parked: AtomicBool,
    stop: AtomicBool,
}

/// Handle to the ticker thread.
#[derive(Debug)]
pub struct Ticker {
    state: Arc<State>,
    thread: Thread,
}

/// Marks a hook call in flight; the ticker keeps ticking while one exists.
#[derive(Debug)]
pub struct Active<'a>(&'a Ticker);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.state.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Ticker {
    /// Starts the thread for `engine`.
    pub fn start(engine: &Engine) -> std::io::Result<Self> {
        let state = Arc::new(State::default());
        let (weak, s) = (engine.weak(), state.clone());
        let handle = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || run(&weak, &s))?;
        Ok(Ticker {
            state,
            thread: handle.thread().clone(),
        })
    }

    /// Call before running guest code; keep the guard for the call.
    pub fn enter(&self) -> Active<'_> {
        self.state.active.fetch_add(1, Ordering::SeqCst);
        if self.state.parked.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
        Active(self)
    }

    /// Is the ticker parked (idle)?
    #[cfg(test)]
    pub fn is_parked(&self) -> bool {
        self.state.parked.load(Ordering::SeqCst)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

fn run(engine: &EngineWeak, s: &State) {
    // `MESH_TICKER_PARK=0`: tick forever (for A/B measurements).
    let park = std::env::var("MESH_TICKER_PARK").map_or(true, |v| v != "0");
    let mut idle = 0;
    while !s.stop.load(Ordering::Relaxed) {
        std::thread::sleep(limits::EPOCH_TICK);
        match engine.upgrade() {
            Some(e) => e.increment_epoch(),
            None => return,
        }
        if s.active.load(Ordering::SeqCst) > 0 {
            idle = 0;
            continue;
        }
        idle += 1;
        if !park || idle < IDLE_TICKS_BEFORE_PARK {
            continue;
        }
        // Publish `parked` before the last look at `active`: a call that
        // starts concurrently either is seen here or sees `parked` and
        // unparks (an unpark before `park` makes it return at once).
        s.parked.store(true, Ordering::SeqCst);
        while s.active.load(Ordering::SeqCst) == 0 && !s.stop.load(Ordering::SeqCst) {
            std::thread::park();
        }
        s.parked.store(false, Ordering::SeqCst);
        idle = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parks_when_idle_and_ticks_while_a_call_runs() {
        let engine = Engine::new(wasmtime::Config::new().epoch_interruption(true)).unwrap();
        let t = Ticker::start(&engine).unwrap();
        let park_after = limits::EPOCH_TICK * IDLE_TICKS_BEFORE_PARK;
        let deadline = std::time::Instant::now() + park_after * 20;
        while !t.is_parked() {
            assert!(std::time::Instant::now() < deadline, "never parked");
            std::thread::sleep(Duration::from_millis(10));
        }
        {
            let _call = t.enter();
            // Awake and ticking for as long as the call runs, even past the
            // idle threshold.
            std::thread::sleep(park_after * 2);
            assert!(!t.is_parked());
        }
        let deadline = std::time::Instant::now() + park_after * 20;
        while !t.is_parked() {
            assert!(std::time::Instant::now() < deadline, "never parked again");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
