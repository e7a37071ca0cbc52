//! End-to-end tests of the OP and the marketplace running side by side, as in
//! production: two servers on two origins. The tests live in `e2e/`.
