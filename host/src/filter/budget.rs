//! CPU budgets of guest calls, without a clock thread.
//!
//! Guests are compiled with fuel metering, and every store yields to the
//! executor after [`limits::FUEL_YIELD_INTERVAL`] units of fuel. A call
//! runs inside [`CpuBudget::run`], which adds up the CPU time spent inside
//! the call's `poll`: guest code plus the host functions it calls, but not
//! the time it waits on `outbound-http` (that wait happens between polls).
//! At the first yield past the budget the call's future is dropped, which
//! unwinds the guest; its instance is then discarded.
//!
//! Time the thread spends preempted by the OS is not the guest's doing and
//! must not be charged: on a loaded node a poll of a 50 µs call can take a
//! whole scheduler slice (several ms) of wall time. Reading the thread's
//! CPU clock costs a system call (≈ 0.36 µs here, against ≈ 0.02 µs for the
//! monotonic clock), too much for every call, and nearly every call
//! completes in its first poll, where nothing needs charging. So the first
//! poll is charged its wall time but at most half the budget, and every
//! later poll (only calls that yielded have any) its thread CPU time.
//!
//! The alternative, epoch interruption, needs a thread bumping a global
//! counter every tick while any call may run. At a steady 1,000 requests/s
//! that thread never parked, and its wake-ups plus the preemptions they
//! caused cost the waypoint ~40 ms of CPU per second, a third of its total
//! (BENCHMARKS.md). Fuel costs a counter update per basic block of guest
//! code and nothing when no guest runs.
//!
//! Host functions that can take real time (`crypto.verify`) also charge
//! their CPU time to the call through [`StoreState::charge`], so a guest
//! looping over them is stopped although it burns little fuel.
//!
//! [`StoreState::charge`]: super::state::StoreState::charge

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::error::DeadlineExceeded;
use super::limits;

/// The budget ran out; the call was cancelled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exceeded;

/// CPU time one call (or one instantiation plus `configure`) may use.
#[derive(Debug)]
pub(crate) struct CpuBudget {
    limit: Duration,
    used: Duration,
    polls: u32,
}

/// CPU time of the calling thread (a system call: use where the work
/// measured is much longer than ≈ 0.4 µs).
pub(crate) fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

impl CpuBudget {
    pub fn new(limit: Duration) -> Self {
        CpuBudget {
            limit,
            used: Duration::ZERO,
            polls: 0,
        }
    }

    /// Time spent inside polls so far.
    #[cfg(test)]
    pub fn used(&self) -> Duration {
        self.used
    }

    /// Drives `fut`, charging the time of each poll (see the module
    /// documentation). Past the limit, the next time the future yields it
    /// is dropped and `Exceeded` returned. A future that completes is never
    /// cancelled, even if that last poll went over.
    pub async fn run<F: Future>(&mut self, fut: F) -> Result<F::Output, Exceeded> {
        let mut fut = pin!(fut);
        std::future::poll_fn(|cx| {
            self.polls += 1;
            let r = if self.polls == 1 {
                let start = Instant::now();
                let r = fut.as_mut().poll(cx);
                self.used += start.elapsed().min(self.limit / 2);
                r
            } else {
                let start = thread_cpu();
                let r = fut.as_mut().poll(cx);
                self.used += thread_cpu().saturating_sub(start);
                r
            };
            match r {
                Poll::Ready(v) => Poll::Ready(Ok(v)),
                Poll::Pending if self.used > self.limit => Poll::Ready(Err(Exceeded)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// [`run`](Self::run) for a wasmtime call: running out of budget is the
    /// call's error, [`DeadlineExceeded`].
    pub async fn call<T, F>(&mut self, fut: F) -> wasmtime::Result<T>
    where
        F: Future<Output = wasmtime::Result<T>>,
    {
        self.run(fut)
            .await
            .unwrap_or_else(|Exceeded| Err(DeadlineExceeded.into()))
    }
}

/// Configures a new store for budgeted calls: all the fuel it can hold
/// (the budget is time, not fuel) and a yield every
/// [`limits::FUEL_YIELD_INTERVAL`].
pub(crate) fn prepare<T>(store: &mut wasmtime::Store<T>) -> wasmtime::Result<()> {
    store.set_fuel(u64::MAX)?;
    store.fuel_async_yield_interval(Some(limits::FUEL_YIELD_INTERVAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A future that burns `spin` of CPU per poll (by the thread's CPU
    /// clock, so preemption by other tests does not shorten it) and yields
    /// `polls` times.
    async fn busy(spin: Duration, polls: u32) -> u32 {
        for _ in 0..polls {
            let t = thread_cpu();
            while thread_cpu().saturating_sub(t) < spin {
                std::hint::spin_loop();
            }
            tokio::task::yield_now().await;
        }
        polls
    }

    /// A future whose thread is off the CPU for `off` in each of `polls`
    /// polls (standing in for preemption by the OS).
    async fn descheduled(off: Duration, polls: u32) -> u32 {
        for _ in 0..polls {
            std::thread::sleep(off);
            tokio::task::yield_now().await;
        }
        polls
    }

    #[tokio::test]
    async fn a_call_within_budget_completes() {
        let mut b = CpuBudget::new(Duration::from_millis(50));
        assert_eq!(b.run(busy(Duration::from_millis(1), 3)).await.unwrap(), 3);
        assert!(b.used() >= Duration::from_millis(3));
    }

    #[tokio::test]
    async fn a_call_past_budget_is_cancelled_at_its_next_yield() {
        let mut b = CpuBudget::new(Duration::from_millis(5));
        let r = b.run(busy(Duration::from_millis(1), 1000)).await;
        assert!(r.is_err());
        let used = b.used();
        assert!(used > Duration::from_millis(5), "{used:?}");
        assert!(used < Duration::from_millis(100), "{used:?}");
    }

    #[tokio::test]
    async fn time_off_the_cpu_is_not_charged() {
        // 8 polls of 3 ms each: 24 ms of wall time inside polls against a
        // 5 ms budget, but almost no CPU.
        let mut b = CpuBudget::new(Duration::from_millis(5));
        let r = b.run(descheduled(Duration::from_millis(3), 8)).await;
        assert_eq!(r.unwrap(), 8);
        assert!(b.used() < Duration::from_millis(5), "{:?}", b.used());
    }

    #[tokio::test]
    async fn a_long_first_poll_is_charged_half_the_budget_at_most() {
        // The first poll spins 20 ms (past the 10 ms budget) and yields: it
        // counts as 5 ms, and the next polls' CPU time decides.
        let mut b = CpuBudget::new(Duration::from_millis(10));
        let first = async {
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(20) {
                std::hint::spin_loop();
            }
            tokio::task::yield_now().await;
            busy(Duration::from_millis(1), 3).await
        };
        assert_eq!(b.run(first).await.unwrap(), 3);
        let used = b.used();
        assert!(used >= Duration::from_millis(7), "{used:?}");
        assert!(used < Duration::from_millis(10), "{used:?}");
        // More spinning after that goes over.
        let mut b = CpuBudget::new(Duration::from_millis(10));
        let r = b.run(busy(Duration::from_millis(2), 1000)).await;
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn waiting_between_polls_is_not_charged() {
        let mut b = CpuBudget::new(Duration::from_millis(5));
        let r = b
            .run(async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                7
            })
            .await;
        assert_eq!(r.unwrap(), 7);
        assert!(b.used() < Duration::from_millis(5), "{:?}", b.used());
    }
}
