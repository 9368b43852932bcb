//! What the connectors that speak TLS through rustls share: the crypto
//! provider, the trust anchors of `verify-full`, and the certificate
//! "verifier" of `prefer` and `require`, which checks nothing but the
//! handshake signatures.
//!
//! The settings themselves are [`crate::connector::TlsConfig`]. PostgreSQL
//! builds its rustls configuration here; MySQL hands the trust anchors to
//! mysql_async; SQL Server's tiberius builds its own from the CA file.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::connector::{TlsConfig, TlsMode};
use crate::error::{ConnectorError, Result};

/// The crypto of every TLS connection: aws-lc-rs, the provider tiberius
/// already brings into the build. It is also installed as the process
/// default, for the drivers (mysql_async, tiberius) that ask rustls for the
/// default rather than take one.
pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    if CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing the same is fine.
        let _ = CryptoProvider::install_default((*provider).clone());
    }
    provider
}

/// The certificates `verify-full` trusts: those of the CA file, or the
/// system's trust store when there is none.
pub(crate) fn trust_anchors(tls: &TlsConfig) -> Result<Vec<CertificateDer<'static>>> {
    match &tls.ca_file {
        Some(path) => ca_file_certificates(path),
        None => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(ConnectorError::config(format!(
                    "tls = \"verify-full\" found no CA certificate in the system's trust store{why}: set tls_ca_file"
                )));
            }
            Ok(found.certs)
        }
    }
}

/// The PEM certificates of a CA file; a file without any is an error.
fn ca_file_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let unreadable = |e: &dyn std::fmt::Display| {
        ConnectorError::config(format!("tls_ca_file: cannot read {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    if certs.is_empty() {
        return Err(ConnectorError::config(format!(
            "tls_ca_file: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// A rustls client configuration for `tls`: the trust anchors and host name
/// check of `verify-full`, or no certificate check for `prefer` and
/// `require` (`disable` gets the latter too, unused).
pub(crate) fn client_config(tls: &TlsConfig) -> Result<ClientConfig> {
    let provider = crypto_provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectorError::internal(format!("TLS setup: {e}")))?;
    Ok(match tls.mode {
        TlsMode::VerifyFull => {
            let mut roots = RootCertStore::empty();
            if tls.ca_file.is_some() {
                for cert in trust_anchors(tls)? {
                    roots.add(cert).map_err(|e| {
                        ConnectorError::config(format!(
                            "tls_ca_file: {}: {e}",
                            tls.ca_file.as_deref().unwrap_or(Path::new("")).display()
                        ))
                    })?;
                }
            } else {
                roots.add_parsable_certificates(trust_anchors(tls)?);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    })
}

/// Accepts any server certificate (`prefer`, `require`: encryption without
/// authentication, as libpq does), but still checks that the server holds
/// the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn verify_full(ca_file: &Path) -> TlsConfig {
        TlsConfig {
            mode: TlsMode::VerifyFull,
            ca_file: Some(ca_file.to_owned()),
        }
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_a_config_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("tandem-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let err = client_config(&verify_full(&missing)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            err.to_string().starts_with("tls_ca_file: cannot read")
                && err.to_string().contains("missing.pem"),
            "{err}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(&verify_full(&empty)).unwrap_err();
        assert!(
            err.to_string().contains("holds no PEM certificate"),
            "{err}"
        );
        assert_eq!(err.to_string().lines().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn modes_without_verification_build_without_trust_anchors() {
        for mode in [TlsMode::Disable, TlsMode::Prefer, TlsMode::Require] {
            let config = client_config(&TlsConfig {
                mode,
                ca_file: None,
            })
            .unwrap();
            assert!(config.enable_sni, "{mode}");
        }
    }
}
