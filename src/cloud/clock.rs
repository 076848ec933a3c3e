//! Injected time and randomness.
//!
//! Signing needs the current time and a fresh nonce; caching needs the time. Both come through
//! these small traits so tests can pin them (a skewed clock, a repeated nonce) without
//! special code paths in the client.

use std::sync::{Arc, Mutex};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> jiff::Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// A clock that follows the system clock shifted by a fixed offset (for skew tests).
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock(pub jiff::SignedDuration);

impl Clock for OffsetClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
            .checked_add(self.0)
            .unwrap_or_else(|_| jiff::Timestamp::now())
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<jiff::Timestamp>);

impl ManualClock {
    pub fn new(start: jiff::Timestamp) -> Arc<Self> {
        Arc::new(Self(Mutex::new(start)))
    }

    pub fn set(&self, to: jiff::Timestamp) {
        if let Ok(mut t) = self.0.lock() {
            *t = to;
        }
    }

    pub fn advance(&self, by: jiff::SignedDuration) {
        if let Ok(mut t) = self.0.lock() {
            *t = t.checked_add(by).unwrap_or(*t);
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> jiff::Timestamp {
        self.0
            .lock()
            .map(|t| *t)
            .unwrap_or_else(|_| jiff::Timestamp::now())
    }
}

/// A source of signature nonces.
pub trait Nonces: Send + Sync + std::fmt::Debug {
    fn nonce(&self) -> String;
}

/// 128 random bits as 32 lowercase hex digits (the SDKs' form).
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomNonces;

impl Nonces for RandomNonces {
    fn nonce(&self) -> String {
        hex::encode(rand::random::<[u8; 16]>())
    }
}

/// Always the same nonce: lets a test show that the server rejects reuse.
#[derive(Debug, Clone)]
pub struct FixedNonce(pub String);

impl Nonces for FixedNonce {
    fn nonce(&self) -> String {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_nonces_are_32_hex_and_differ() {
        let a = RandomNonces.nonce();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, RandomNonces.nonce());
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start: jiff::Timestamp = "2024-01-02T03:04:05Z".parse().unwrap();
        let c = ManualClock::new(start);
        assert_eq!(c.now(), start);
        c.advance(jiff::SignedDuration::from_secs(60));
        assert_eq!(c.now().to_string(), "2024-01-02T03:05:05Z");
    }
}
