//! chorus-server: the RESP server of one Chorus site.
