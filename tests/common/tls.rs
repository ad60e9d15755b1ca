//! Test certificates, made with rcgen for each test run and written as PEM files in a
//! temporary directory that is removed when the [`Certs`] is dropped: a CA, a server
//! certificate for `localhost` and `127.0.0.1` signed by it, a client certificate
//! signed by it, and a second, unrelated CA with a client certificate of its own.

use std::path::{Path, PathBuf};

pub use super::TempDir;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// PEM files for a TLS test.
pub struct Certs {
    pub dir: TempDir,
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Another CA, and a client certificate it signed (refused by the first CA).
    pub other_ca: PathBuf,
    pub other_client_cert: PathBuf,
    pub other_client_key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    names: &[&str],
    cn: &str,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    dir: &Path,
    stem: &str,
) -> (PathBuf, PathBuf) {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}-key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

impl Certs {
    pub fn new(test: &str) -> Certs {
        let dir = TempDir::new(test);
        let ca1 = ca("twistor test CA");
        let ca2 = ca("another CA");
        let ca_path = dir.path("ca.pem");
        std::fs::write(&ca_path, ca1.pem()).unwrap();
        let other_ca = dir.path("other-ca.pem");
        std::fs::write(&other_ca, ca2.pem()).unwrap();
        let (server_cert, server_key) = leaf(
            &["localhost", "127.0.0.1"],
            "localhost",
            &ca1,
            &dir.0,
            "server",
        );
        let (client_cert, client_key) = leaf(&["client.test"], "client", &ca1, &dir.0, "client");
        let (other_client_cert, other_client_key) =
            leaf(&["intruder.test"], "intruder", &ca2, &dir.0, "intruder");
        Certs {
            dir,
            ca: ca_path,
            server_cert,
            server_key,
            client_cert,
            client_key,
            other_ca,
            other_client_cert,
            other_client_key,
        }
    }
}
