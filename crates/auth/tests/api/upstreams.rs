//! Local stand-ins for Apple, Yahoo! JAPAN and Facebook (helper H6 writes this).
