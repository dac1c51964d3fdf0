//! Bare actix-web hello-world (work in progress).

fn main() {}
