//! The client to the API server, with the certificate check that Go's clients (kubectl,
//! client-go) make.
//!
//! kube's own client checks the server with webpki, which refuses a server certificate
//! that is itself the trusted one when it is marked as a CA (`CaUsedAsEndEntity`): what
//! `openssl req -x509` makes by default, and what small clusters and test servers often
//! serve, with that same certificate as the kubeconfig's `certificate-authority`. Go's
//! x509 accepts it (the certificate is its own root). Here such a server is accepted
//! exactly when webpki's only objection is that one, the certificate it presents is,
//! byte for byte, one of the trusted ones, and it names the server; the handshake's
//! signatures are checked as always. Anything else (expired, another name) is webpki's
//! decision. The stack around it is kube's own (its base URI, retry,
//! authentication and header layers; its connect, read and write timeouts).

use kube::client::ConfigExt;
use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;

/// A client for `config`. kube's own stack where it checks certificates as Go does (plain
/// HTTP, verification off, the in-cluster CA file it re-reads, a proxy); otherwise the
/// same layers over a TLS connector with [`Verifier`].
pub fn client(config: kube::Config) -> Result<kube::Client, crate::Error> {
    let Some(roots) = config.root_cert.clone() else {
        return Ok(kube::Client::try_from(config)?);
    };
    if config.accept_invalid_certs
        || config.root_cert_file.is_some()
        || config.proxy_url.is_some()
        || config.cluster_url.scheme_str() != Some("https")
    {
        return Ok(kube::Client::try_from(config)?);
    }
    let mut tls = config.rustls_client_config()?;
    let provider = tls.crypto_provider().clone();
    let verifier = Verifier::new(roots, provider).map_err(|e| crate::Error::Tls(e.to_string()))?;
    tls.dangerous().set_certificate_verifier(Arc::new(verifier));
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_keepalive(Some(std::time::Duration::from_secs(30)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let https = match &config.tls_server_name {
        Some(name) => {
            let name = ServerName::try_from(name.clone())
                .map_err(|e| crate::Error::Tls(format!("tls-server-name {name:?}: {e}")))?;
            https
                .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
                .enable_http1()
                .wrap_connector(http)
        }
        None => https.enable_http1().wrap_connector(http),
    };
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let http_client =
        hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new())
            .build::<_, kube::client::Body>(connector);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.default_retry.then(|| {
            tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry())
        }))
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http_client);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// webpki's check, and a server certificate that is itself one of the trusted ones
/// (DER-equal) and names the server accepted as Go accepts it.
#[derive(Debug)]
pub struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    roots: Vec<Vec<u8>>,
}

impl Verifier {
    /// The trusted certificates, DER; `provider`: the signature algorithms.
    pub fn new(
        roots: Vec<Vec<u8>>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Verifier, rustls::Error> {
        let mut store = rustls::RootCertStore::empty();
        for der in &roots {
            store
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(Verifier { webpki, roots })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let e = match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        // Only for that refusal: an expired certificate, one for another name or purpose
        // is refused as before (webpki checks those first).
        let ca_as_end_entity = matches!(
            &e,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))
                if o.to_string().contains("CaUsedAsEndEntity")
        );
        if !ca_as_end_entity || !self.roots.iter().any(|r| r[..] == end_entity[..]) {
            return Err(e);
        }
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&cert, server_name)?;
        tracing::debug!(error = %e, "the API server's certificate is itself a trusted one: accepted, as Go's clients accept it");
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    const SELF_SIGNED: &str = include_str!("testdata/self-signed-ca-true.pem");
    const CA: &str = include_str!("testdata/ca.pem");
    const LEAF: &str = include_str!("testdata/leaf-of-ca.pem");

    // The provider kube builds with (ring, deprecated in favour of post-quantum key
    // exchange, which a certificate check does not involve).
    #[allow(deprecated)]
    fn verify(roots: &[&str], server: &str, name: &str) -> Result<(), rustls::Error> {
        verify_at(roots, server, name, UnixTime::now())
    }

    #[allow(deprecated)]
    fn verify_at(
        roots: &[&str],
        server: &str,
        name: &str,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let v = Verifier::new(
            roots.iter().map(|p| der(p).to_vec()).collect(),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .unwrap();
        let name = ServerName::try_from(name.to_string()).unwrap();
        v.verify_server_cert(&der(server), &[], &name, &[], now)
            .map(|_| ())
    }

    #[test]
    fn a_server_certificate_that_is_the_trusted_one_passes_as_in_go() {
        // webpki alone refuses it: a CA used as the end entity.
        assert!(verify(&[SELF_SIGNED], SELF_SIGNED, "127.0.0.1").is_ok());
        assert!(verify(&[CA, SELF_SIGNED], SELF_SIGNED, "localhost").is_ok());
        // ... but only for the names it carries.
        assert!(verify(&[SELF_SIGNED], SELF_SIGNED, "10.0.0.1").is_err());
        assert!(verify(&[SELF_SIGNED], SELF_SIGNED, "elsewhere.example").is_err());
        // Not trusted: refused.
        assert!(verify(&[CA], SELF_SIGNED, "127.0.0.1").is_err());
        // Out of its validity (it ends in 2126): refused, as Go refuses it.
        let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(7_000_000_000));
        let e = verify_at(&[SELF_SIGNED], SELF_SIGNED, "127.0.0.1", later).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
    }

    #[test]
    fn a_server_certificate_signed_by_the_ca_is_webpkis_to_judge() {
        assert!(verify(&[CA], LEAF, "127.0.0.1").is_ok());
        assert!(verify(&[CA], LEAF, "10.0.0.1").is_err());
        assert!(verify(&[SELF_SIGNED], LEAF, "127.0.0.1").is_err());
        // The CA's own certificate presented by a server names nothing.
        assert!(verify(&[CA], CA, "127.0.0.1").is_err());
    }
}
