//! [`RelayMsg`]: what the relay actor's mailbox takes.

use crate::events::event::Published;

pub enum RelayMsg {
    /// Events of other instances, read from the stream: for the bus.
    Received(Vec<Published>),
    /// One of the relay's tasks ended (it never should): the relay fails,
    /// and its supervisor restarts it with fresh tasks.
    Ended { task: &'static str, reason: String },
}
