//! The bound on transfers under way (`SYNC_CONCURRENCY`).
//!
//! The setting exists to keep a home uplink from being saturated: it counts transfers that
//! move many bytes. An object small enough to come in one request (≤ 1 MiB) costs a round
//! trip, not bandwidth: two of them at a time against R2's tens of milliseconds would cap a
//! pass at a few dozen files per second. So each transfer slot takes one large transfer or
//! [`SMALL_PER_SLOT`] small ones, which bounds the bytes in flight to about the same amount.

use tokio::sync::{Semaphore, SemaphorePermit};

/// Small objects that may be in flight in place of one large transfer.
pub const SMALL_PER_SLOT: u32 = 8;

pub struct Transfers {
    units: Semaphore,
}

impl Transfers {
    /// `slots` large transfers at once (at least one).
    pub fn new(slots: usize) -> Self {
        let units = slots
            .max(1)
            .saturating_mul(SMALL_PER_SLOT as usize)
            .min(Semaphore::MAX_PERMITS);
        Self {
            units: Semaphore::new(units),
        }
    }

    /// A slot for a transfer of any size.
    pub async fn large(&self) -> SemaphorePermit<'_> {
        // Never more than the semaphore holds: `new` gives it at least one whole slot.
        self.units
            .acquire_many(SMALL_PER_SLOT)
            .await
            .expect("the semaphore is never closed")
    }

    /// A share of a slot, for an object fetched by one request of at most 1 MiB.
    pub async fn small(&self) -> SemaphorePermit<'_> {
        self.units.acquire().await.expect("the semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slot_holds_one_large_transfer_or_several_small_ones() {
        let transfers = Transfers::new(2);
        let large = [transfers.large().await, transfers.large().await];
        assert!(transfers.units.try_acquire().is_err(), "two slots, both taken");
        drop(large);
        let small: Vec<_> = futures::future::join_all((0..2 * SMALL_PER_SLOT).map(|_| transfers.small())).await;
        assert_eq!(small.len(), 16);
        assert!(
            transfers.units.try_acquire().is_err(),
            "sixteen small ones fill two slots"
        );
        let waiting = transfers.large();
        tokio::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending());
        drop(small);
        let _large = waiting.await;
    }

    #[tokio::test]
    async fn zero_slots_still_allow_one_transfer() {
        let transfers = Transfers::new(0);
        let _large = transfers.large().await;
        assert!(transfers.units.try_acquire().is_err());
    }
}
