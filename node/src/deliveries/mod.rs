//! Delivery reports on the node: counting what this seed delivered ([`counter`]).
pub mod counter;
