//! The OP and the marketplace as two servers on two origins (the OP on `localhost`, the
//! marketplace on `127.0.0.1`), a member signing in through the real forms with a
//! cookie-keeping HTTP client, and the hostile requests the marketplace must refuse.

mod backchannel;
mod forms;
mod schema;
mod sessions;
mod signin;
mod world;
