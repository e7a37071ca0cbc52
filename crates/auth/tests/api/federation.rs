//! Social sign-in through a second Tobira as the upstream (helper H5 writes this).
