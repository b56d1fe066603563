//! The front doors, one module per wire dialect. Each parses and authenticates
//! its wire format, records the request, hands it to the core and a provider, and
//! answers in its own format with its own error codes.
//!
//! | core   | xip (seed 000)                  |
//! | ------ | ------------------------------- |
//! | A side | Requestor → RequestorPhone      |
//! | B side | Fulfillment → DestinationPhone  |
//! | A sees | RequestorCID (last 10 of B)     |
//! | B sees | DestinationCID (last 10 of A)   |
//! | limit  | TimeLimit (s)                   |

pub mod xip;

/// The header every dialect answer carries: the call's id.
pub const CALL_ID_HEADER: &str = "c2c-call-id";
