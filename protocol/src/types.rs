//! Newtypes for the numbers Strata must never confuse.
//!
//! A record [`Offset`] counts data records in a partition (dense, starting at 0); a [`RaftIndex`]
//! counts Raft log entries (one per batch, control batches included, starting at 1); a
//! [`RaftTerm`] is a Raft election term. They are all `u64` underneath and convert only
//! explicitly.

use std::fmt;

macro_rules! newtype_u64 {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw value.
            #[inline]
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

newtype_u64!(
    /// A record offset within a partition. Offsets are dense over data records: a data batch's
    /// base offset is the previous data batch's base offset plus its record count.
    Offset
);
newtype_u64!(
    /// A Raft log index. Every batch in a partition log (data or control) is one Raft entry and
    /// takes exactly one index; the first entry of a fresh log has index 1.
    RaftIndex
);
newtype_u64!(
    /// A Raft election term.
    RaftTerm
);
