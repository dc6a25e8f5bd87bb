//! Certificates and TLS configuration for peer connections (mutual TLS).
//!
//! A cluster CA signs one certificate per site; the certificate names the site
//! as the DNS name `site-<id>.chorus`. A site dialing peer N verifies that the
//! peer's certificate chains to the cluster CA and is valid for
//! `site-N.chorus`; a site accepting a connection verifies the client's
//! certificate chains to the CA and, once the peer says which site it is,
//! checks the certificate names that site. Unknown peers are refused during
//! the TLS handshake, before any replication data moves.
//!
//! The accepting side learns which site dialed it from the client certificate
//! ([`site_of_cert`]) before it reads a byte of the stream, and the session is
//! then pinned to that site (a `Hello` naming another site is refused).

use chorus_engine::id::SiteId;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

/// ALPN protocol id of Chorus replication.
pub const ALPN: &[u8] = b"chorus-repl/1";

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS configuration failed: {0}")]
    Verifier(String),
    #[error("peer certificate does not name site {site}: {reason}")]
    WrongSite { site: u16, reason: String },
    #[error("peer certificate names no single site: {0}")]
    NoSite(String),
}

/// The DNS name a site's certificate carries.
pub fn site_name(site_id: u16) -> String {
    format!("site-{site_id}.chorus")
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::write(path, contents).map_err(io)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = private;
    Ok(())
}

fn read_file(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// `chorus-server cert ca --out DIR`: writes `ca.pem` and `ca.key`.
pub fn generate_ca(out: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(out).map_err(|source| TlsError::Io {
        path: out.display().to_string(),
        source,
    })?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Chorus cluster CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write_file(&out.join("ca.pem"), &cert.pem(), false)?;
    write_file(&out.join("ca.key"), &key.serialize_pem(), true)?;
    Ok(())
}

/// `chorus-server cert site --ca DIR --site-id N --out DIR2`: writes
/// `site.pem` (the site's certificate followed by the CA's) and `site.key`.
pub fn generate_site(ca_dir: &Path, site_id: u16, out: &Path) -> Result<(), TlsError> {
    let ca_pem = read_file(&ca_dir.join("ca.pem"))?;
    let ca_key_pem = read_file(&ca_dir.join("ca.key"))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let ca_params = CertificateParams::from_ca_cert_pem(&ca_pem)?;
    // rcgen signs with a `Certificate`; re-creating it from the CA's own
    // parameters and key gives the same issuer name and key identifier.
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let mut params = CertificateParams::new(vec![site_name(site_id)])?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Chorus site {site_id}"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
    std::fs::create_dir_all(out).map_err(|source| TlsError::Io {
        path: out.display().to_string(),
        source,
    })?;
    write_file(
        &out.join("site.pem"),
        &format!("{}{}", cert.pem(), ca_pem),
        false,
    )?;
    write_file(&out.join("site.key"), &key.serialize_pem(), true)?;
    Ok(())
}

/// A site's TLS identity: its certificate chain, its key, and the cluster CA.
///
/// `Debug` prints the chain length only, never the key.
pub struct TlsIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub roots: Arc<rustls::RootCertStore>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            roots: self.roots.clone(),
        }
    }
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("chain_len", &self.chain.len())
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Loads the cluster CA certificate(s) (`ca.pem`), this site's chain
    /// (`site.pem`) and its key (`site.key`).
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<TlsIdentity, TlsError> {
        let pem_err = |p: &Path, e: rustls::pki_types::pem::Error| TlsError::Pem {
            path: p.display().to_string(),
            reason: e.to_string(),
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| pem_err(cert, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| pem_err(cert, e))?;
        if chain.is_empty() {
            return Err(TlsError::Pem {
                path: cert.display().to_string(),
                reason: "no certificate found".into(),
            });
        }
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).map_err(|e| pem_err(ca, e))? {
            roots.add(c.map_err(|e| pem_err(ca, e))?)?;
        }
        Ok(TlsIdentity {
            chain,
            key: key_der,
            roots: Arc::new(roots),
        })
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// Server side: requires a client certificate from the cluster CA.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            self.roots.clone(),
            Self::provider(),
        )
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(Self::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        Ok(cfg)
    }

    /// Client side: verifies the server against the cluster CA, presents our certificate.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut cfg = rustls::ClientConfig::builder_with_provider(Self::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        Ok(cfg)
    }
}

/// The site id in a DNS name of the form `site-<id>.chorus`.
fn parse_site_name(name: &str) -> Option<SiteId> {
    let digits = name.strip_prefix("site-")?.strip_suffix(".chorus")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The site a (CA-verified) peer certificate names: it must carry exactly one
/// `site-<id>.chorus` name, so that one certificate can never speak for two
/// sites.
pub fn site_of_cert(cert: &CertificateDer<'_>) -> Result<SiteId, TlsError> {
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|e| TlsError::NoSite(e.to_string()))?;
    let mut sites = ee.valid_dns_names().filter_map(parse_site_name);
    let Some(site) = sites.next() else {
        return Err(TlsError::NoSite("no site-<id>.chorus name".into()));
    };
    if sites.any(|other| other != site) {
        return Err(TlsError::NoSite("names more than one site".into()));
    }
    check_peer_site(cert, site)?;
    Ok(site)
}

/// Checks that a (CA-verified) peer certificate names `site_id`.
pub fn check_peer_site(cert: &CertificateDer<'_>, site_id: u16) -> Result<(), TlsError> {
    let wrong = |reason: String| TlsError::WrongSite {
        site: site_id,
        reason,
    };
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|e| wrong(e.to_string()))?;
    let name = ServerName::try_from(site_name(site_id)).map_err(|e| wrong(e.to_string()))?;
    ee.verify_is_valid_for_subject_name(&name)
        .map_err(|e| wrong(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_cert(path: &Path) -> CertificateDer<'static> {
        let mut certs = CertificateDer::pem_file_iter(path).unwrap();
        certs.next().unwrap().unwrap()
    }

    #[test]
    fn a_site_certificate_names_its_site_and_only_it() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        let site = dir.path().join("site7");
        generate_ca(&ca).unwrap();
        generate_site(&ca, 7, &site).unwrap();
        let id = TlsIdentity::load(
            &ca.join("ca.pem"),
            &site.join("site.pem"),
            &site.join("site.key"),
        )
        .unwrap();
        assert_eq!(id.chain.len(), 2, "site certificate followed by the CA's");
        assert!(id.server_config().is_ok());
        assert!(id.client_config().is_ok());
        let cert = first_cert(&site.join("site.pem"));
        assert_eq!(site_of_cert(&cert).unwrap(), 7);
        assert!(check_peer_site(&cert, 7).is_ok());
        assert!(matches!(
            check_peer_site(&cert, 8),
            Err(TlsError::WrongSite { site: 8, .. })
        ));
        // The CA's own certificate names no site.
        assert!(matches!(
            site_of_cert(&first_cert(&ca.join("ca.pem"))),
            Err(TlsError::NoSite(_))
        ));
    }

    #[test]
    fn site_names_parse_strictly() {
        assert_eq!(parse_site_name("site-12.chorus"), Some(12));
        assert_eq!(parse_site_name(&site_name(65535)), Some(65535));
        for bad in [
            "site-.chorus",
            "site-+1.chorus",
            "site-70000.chorus",
            "site-1.chorus.evil",
            "x-1.chorus",
        ] {
            assert_eq!(parse_site_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn missing_files_are_reported_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        match generate_site(&missing, 1, dir.path()) {
            Err(TlsError::Io { path, .. }) => assert!(path.ends_with("ca.pem")),
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }
}
