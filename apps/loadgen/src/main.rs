//! Socket.IO load generator (work in progress).

fn main() {}
