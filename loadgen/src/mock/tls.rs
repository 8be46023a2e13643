//! A throw-away certificate authority for the mock vendors.
//!
//! rustls refuses a CA certificate used directly as an end-entity certificate, so the
//! CA signs a separate server certificate valid for `127.0.0.1` and `localhost`. The
//! engine under test trusts the CA (file from [`TestCa::write_ca_file`]); tests and the
//! load generator's bare client use [`TestCa::client_config`]. Both sides offer ALPN
//! `h2` only, like the real vendors, and use the rustls *ring* provider explicitly
//! (the aws-lc provider is not compiled in).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// ALPN protocol id of HTTP/2 over TLS, the only protocol the mocks speak.
const ALPN_H2: &[u8] = b"h2";

/// A test CA plus the server identity it issued, ready as rustls configs.
///
/// Configs are built once in [`TestCa::generate`]; the accessors hand out cheap `Arc`
/// clones, so one `TestCa` can serve any number of mocks and clients.
#[derive(Clone)]
pub struct TestCa {
    ca_pem: String,
    server_config: Arc<ServerConfig>,
    client_config: Arc<ClientConfig>,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// Generates a fresh P-256 CA and a server certificate it signs for `127.0.0.1`
    /// (IP SAN) and `localhost` (DNS SAN).
    pub fn generate() -> anyhow::Result<TestCa> {
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("generate test CA key")?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Fanfare Test CA");
        ca_params
            .distinguished_name
            .push(DnType::OrganizationName, "Fanfare");
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .context("self-sign test CA")?;

        let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("generate mock server key")?;
        let mut server_params = CertificateParams::new(vec!["localhost".to_owned()])?;
        server_params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server_params
            .distinguished_name
            .push(DnType::CommonName, "fanfare mock vendor");
        server_params.is_ca = IsCa::ExplicitNoCa;
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params
            .signed_by(&server_key, &ca_cert, &ca_key)
            .context("sign mock server certificate")?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let chain: Vec<CertificateDer<'static>> =
            vec![server_cert.der().clone(), ca_cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let mut server_config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("rustls server protocol versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("rustls server certificate")?;
        server_config.alpn_protocols = vec![ALPN_H2.to_vec()];

        let mut roots = RootCertStore::empty();
        roots
            .add(ca_cert.der().clone())
            .context("add test CA to root store")?;
        let mut client_config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("rustls client protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client_config.alpn_protocols = vec![ALPN_H2.to_vec()];

        Ok(TestCa {
            ca_pem: ca_cert.pem(),
            server_config: Arc::new(server_config),
            client_config: Arc::new(client_config),
        })
    }

    /// The CA certificate in PEM, for anything that wants to trust the mocks.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes the CA certificate to `dir/ca.pem` and returns that path.
    pub fn write_ca_file(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem)
            .with_context(|| format!("write test CA to {}", path.display()))?;
        Ok(path)
    }

    /// Server side: the CA-signed certificate for `127.0.0.1`/`localhost`, ALPN `h2`.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server_config.clone()
    }

    /// Client side: trusts only this CA, offers ALPN `h2`.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client_config.clone()
    }
}
