//! On-disk failure cases, one file per class (as redb does), linked as one test binary.

mod corruption;
mod crash_consistency;
