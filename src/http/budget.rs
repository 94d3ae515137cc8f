//! The memory pushes in flight may hold, as a budget: each push reserves what it will need
//! before it needs it, and waits briefly or is refused (429) when the budget is taken, so that
//! no mix of pushes can make the process run out of memory (an out-of-memory kill would nack
//! everything in flight on the instance, again and again).
//!
//! What a push needs is estimated from what it carries, by a model measured with
//! `cargo bench --bench load -- --large-messages 1 --shapes …` (the README's Performance
//! section): about 4½ times its body (the body, the envelope as read, the decoded data, the
//! row's copies and their encodings) and, once its payload is known to be JSON, 128 bytes
//! for each JSON value in it (the value tree, the typed row built from it).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes a push holds for each byte of its body, in halves (4½).
const HALF_BYTES_PER_BODY_BYTE: usize = 9;
/// Bytes a push holds for each JSON value of its payload.
pub const BYTES_PER_JSON_VALUE: usize = 128;
/// The budget is counted in KiB.
const UNIT: usize = 1024;

/// `--memory-budget-mb` and how long a push waits for room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetConfig {
    pub bytes: usize,
    pub wait: Duration,
}

impl BudgetConfig {
    /// What a push with a body of this many bytes reserves before reading it.
    pub fn body_cost(body: usize) -> usize {
        body.saturating_mul(HALF_BYTES_PER_BODY_BYTE) / 2
    }

    /// The smallest budget that holds a push of the largest body.
    pub fn least_for(max_body: usize) -> usize {
        Self::body_cost(max_body)
    }
}

/// The half of the container's memory limit (what Cloud Run sets), else 256 MiB: the rest is
/// the process itself and the allocator's slack.
pub fn default_budget_bytes() -> usize {
    container_memory_limit().map_or(256 << 20, |limit| (limit / 2) as usize)
}

/// The memory limit of this process's cgroup (v2 `memory.max`, or v1), if one is set.
fn container_memory_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let limit = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))?;
    // "max", or a number so large it means none.
    limit.trim().parse::<u64>().ok().filter(|l| *l < 1 << 60)
}

pub struct MemoryBudget {
    units: Arc<Semaphore>,
    config: BudgetConfig,
}

/// Memory reserved by one push; given back when dropped.
pub struct Reservation {
    permits: Vec<OwnedSemaphorePermit>,
    bytes: usize,
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The budget cannot give what was asked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoom {
    /// Other pushes hold it; asked again later, it may fit.
    Taken,
    /// More than the whole budget: it never fits.
    TooLarge,
}

impl MemoryBudget {
    pub fn new(config: BudgetConfig) -> Self {
        let units = config.bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
        Self {
            units: Arc::new(Semaphore::new(units)),
            config,
        }
    }

    pub fn total(&self) -> usize {
        self.config.bytes
    }

    /// Bytes held by pushes now.
    pub fn reserved(&self) -> usize {
        (self.config.bytes.div_ceil(UNIT) - self.units.available_permits()) * UNIT
    }

    /// Reserves `bytes`, waiting at most the configured time for other pushes to give back.
    pub async fn reserve(&self, bytes: usize) -> Result<Reservation, NoRoom> {
        let mut reservation = Reservation {
            permits: Vec::new(),
            bytes: 0,
        };
        self.grow(&mut reservation, bytes).await?;
        Ok(reservation)
    }

    /// Adds `bytes` to a reservation, on the same terms.
    pub async fn grow(&self, reservation: &mut Reservation, bytes: usize) -> Result<(), NoRoom> {
        if reservation.bytes + bytes > self.config.bytes {
            return Err(NoRoom::TooLarge);
        }
        let units = u32::try_from(bytes.div_ceil(UNIT)).map_err(|_| NoRoom::TooLarge)?;
        let acquired = tokio::time::timeout(
            self.config.wait,
            self.units.clone().acquire_many_owned(units),
        )
        .await;
        match acquired {
            Ok(Ok(permit)) => {
                reservation.permits.push(permit);
                reservation.bytes += bytes;
                Ok(())
            }
            _ => Err(NoRoom::Taken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(bytes: usize) -> MemoryBudget {
        MemoryBudget::new(BudgetConfig {
            bytes,
            wait: Duration::from_millis(100),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn pushes_hold_what_they_reserve_until_dropped_and_wait_briefly_for_room() {
        let budget = budget(10 * UNIT);
        let first = budget.reserve(6 * UNIT).await.unwrap();
        assert_eq!(budget.reserved(), 6 * UNIT);
        assert_eq!(budget.reserve(5 * UNIT).await.err(), Some(NoRoom::Taken));
        let mut second = budget.reserve(4 * UNIT).await.unwrap();
        assert_eq!(budget.grow(&mut second, 1).await, Err(NoRoom::Taken));
        drop(first);
        budget.grow(&mut second, 6 * UNIT).await.unwrap();
        assert_eq!(second.bytes(), 10 * UNIT);
        drop(second);
        assert_eq!(budget.reserved(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn what_exceeds_the_whole_budget_never_fits_and_says_so_at_once() {
        let budget = budget(10 * UNIT);
        assert_eq!(
            budget.reserve(10 * UNIT + 1).await.err(),
            Some(NoRoom::TooLarge)
        );
        let mut held = budget.reserve(8 * UNIT).await.unwrap();
        assert_eq!(
            budget.grow(&mut held, 3 * UNIT).await,
            Err(NoRoom::TooLarge)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_push_waiting_for_room_gets_it_when_another_gives_it_back() {
        let budget = Arc::new(MemoryBudget::new(BudgetConfig {
            bytes: 10 * UNIT,
            wait: Duration::from_secs(5),
        }));
        let held = budget.reserve(10 * UNIT).await.unwrap();
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(UNIT).await.map(|r| r.bytes()) }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(held);
        assert_eq!(waiting.await.unwrap(), Ok(UNIT));
    }

    #[test]
    fn the_largest_body_sets_the_least_budget() {
        assert_eq!(BudgetConfig::body_cost(2), 9);
        assert_eq!(BudgetConfig::least_for(16 << 20), 72 << 20);
    }
}
