//! Sign-in help (`/signin-help`): filled in by the sign-in help work.
