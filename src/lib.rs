//! A sparse cargo registry served over HTTP behind a simulated CDN whose edges
//! receive purges late.
