//! Seeded damage to bytes, for the tests that hold a parser to a reference decoder on
//! thousands of broken copies of real input: a xorshift generator (reproducible, no
//! dependency) and the four kinds of damage those tests apply.

pub(crate) struct Damage {
    state: u64,
}

impl Damage {
    /// `seed` must not be zero (xorshift stays at zero).
    pub fn new(seed: u64) -> Self {
        Damage { state: seed }
    }

    pub fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    /// A copy of `bytes` (not empty) with one bit flipped, one byte replaced, dropped or
    /// inserted, and where.
    pub fn one_change(&mut self, bytes: &[u8]) -> (Vec<u8>, usize) {
        let mut damaged = bytes.to_vec();
        let at = (self.next() as usize) % damaged.len();
        match self.next() % 4 {
            0 => damaged[at] ^= 1 << (self.next() % 8),
            1 => damaged[at] = self.next() as u8,
            2 => {
                damaged.remove(at);
            }
            _ => damaged.insert(at, self.next() as u8),
        }
        (damaged, at)
    }
}
