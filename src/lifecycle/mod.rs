//! Lambda lifecycle (extension mode): the Extensions API events that drive refresh-ahead,
//! flushes and shutdown. So far: the event and trace-header types; the client and the event
//! loop come with the lifecycle issue.

pub mod event;
