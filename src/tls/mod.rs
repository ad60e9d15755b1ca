//! TLS over rustls, for any protocol, on listeners and on client connections.
//!
//! A connection accepted by [`Reactor::listen_tls`](crate::Reactor::listen_tls) (or
//! `listen_unix_tls`), or made by [`Reactor::connect_tls`](crate::Reactor::connect_tls)
//! (or `connect_unix_tls`), speaks TLS; its protocol, a framer included, sees plaintext
//! through the same [`Context`](crate::Context) verbs and gets its callbacks in the
//! same order, with the same guarantees, as on a plaintext connection. This is
//! Twisted's `TLSMemoryBIOProtocol` over rustls's sans-IO connection, with one
//! difference of shape: the TLS session belongs to the connection, not to a wrapper
//! protocol, so that bytes written to it from anywhere (`cx.conn(id).write(..)` from a
//! chat room, `reactor.conn(id)`) are encrypted too.
//!
//! What it does, as Twisted does:
//! - `connection_made` comes when the TCP (or Unix) connection is up, before the
//!   handshake; what the protocol writes before the handshake is done is held and
//!   sent once it is. [`Context::tls`](crate::Context::tls) says whether the
//!   handshake is done and, once it is, what it settled (peer certificates, SNI name,
//!   ALPN protocol, version).
//! - Data arrives after the handshake, decrypted, one `data_received` per read.
//!   A paused reader stops reading TLS records too.
//! - `lose_connection` flushes what was written, sends `close_notify`, then closes as
//!   on plaintext (the write side shut, the linger). During the handshake it aborts if
//!   nothing was written, else it waits for the handshake, flushes, and closes.
//! - A peer that ends TCP without `close_notify` is reported as
//!   [`Reason::Truncated`](crate::Reason::Truncated), and the connection closes at
//!   once (what is queued for it is dropped: its stream was cut, so it is not a
//!   peer that will read our end); a handshake that fails (a bad
//!   certificate, no common version, bytes that are not TLS), a record that does not
//!   decrypt, a handshake that does not finish within its timeout or grows past its
//!   byte bound, as [`Reason::Tls`](crate::Reason::Tls) with rustls's error. The
//!   alert rustls queues for the error is sent before the close.
//!
//! Plaintext held for the handshake or corked for the end of the turn, and ciphertext
//! the kernel has not taken, count against the connection's watermarks and write cap:
//! [`Context::buffered`](crate::Context::buffered) is their sum. The cap is checked on
//! the plaintext when it is written and again once it is encrypted, so what TLS adds
//! (records' headers and tags, handshake flights, alerts) cannot take the queue past it.
//!
//! # Examples
//!
//! ```no_run
//! use twistor::tls::TlsAcceptor;
//! use twistor::{Addr, Context, Protocol, Reactor};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, cx: &mut Context<'_>, data: &[u8]) {
//!         cx.write(data);
//!     }
//! }
//!
//! let tls = TlsAcceptor::from_pem("cert.pem", "key.pem")?;
//! let mut reactor = Reactor::new()?;
//! reactor.listen_tls("127.0.0.1:8443".parse().unwrap(), &tls, |_: &Addr| Some(Echo))?;
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub(crate) mod session;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use session::Session;

/// A handshake that has not finished by then is closed (`--tls-handshake-timeout`'s
/// default in the examples).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Ciphertext a peer may send before its handshake is done. A certificate chain of a
/// few certificates is a few KiB; past this the peer is not doing a handshake.
pub const DEFAULT_MAX_HANDSHAKE_BYTES: usize = 128 * 1024;

/// A TLS configuration file could not be used: which file, and why.
#[derive(Debug)]
pub struct ConfigError {
    /// The file at fault, when one is.
    pub path: Option<PathBuf>,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {}", p.display(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

fn config_error(path: &Path, message: impl fmt::Display) -> ConfigError {
    ConfigError {
        path: Some(path.to_path_buf()),
        message: message.to_string(),
    }
}

/// Reads every certificate in a PEM file (a chain: leaf first).
///
/// # Errors
/// The file cannot be read, is not PEM, or holds no certificate.
pub fn load_certificates(
    path: impl AsRef<Path>,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let path = path.as_ref();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| config_error(path, pem_message(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_error(path, pem_message(&e)))?;
    if certs.is_empty() {
        return Err(config_error(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
///
/// # Errors
/// The file cannot be read or holds no private key.
pub fn load_private_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let path = path.as_ref();
    PrivateKeyDer::from_pem_file(path).map_err(|e| config_error(path, pem_message(&e)))
}

fn pem_message(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => "no PEM section of the expected kind".to_owned(),
        e => format!("not valid PEM: {e:?}"),
    }
}

fn roots_from(path: &Path) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| config_error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The server side's TLS settings: a `rustls::ServerConfig` and the handshake's
/// bounds. Cheap to clone; one serves any number of listeners.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use twistor::tls::TlsAcceptor;
///
/// // A chain and its key from PEM files; clients must show a certificate from ca.pem.
/// let tls = TlsAcceptor::from_pem("cert.pem", "key.pem")?
///     .require_client_cert("ca.pem")?
///     .alpn(&[b"chat/1"])
///     .handshake_timeout(Duration::from_secs(5));
/// # Ok::<(), twistor::tls::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
    max_handshake_bytes: usize,
    /// Kept to rebuild the config for `require_client_cert` and `alpn`.
    chain: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    client_roots: Option<Arc<RootCertStore>>,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_handshake_bytes", &self.max_handshake_bytes)
            .field("alpn", &self.config.alpn_protocols)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Uses a ready `ServerConfig` (rustls's defaults, TLS 1.2 and 1.3, or yours).
    pub fn new(config: Arc<ServerConfig>) -> TlsAcceptor {
        TlsAcceptor {
            config,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_handshake_bytes: DEFAULT_MAX_HANDSHAKE_BYTES,
            chain: None,
            client_roots: None,
        }
    }

    /// A certificate chain (leaf first) and its private key, from PEM files; TLS 1.2
    /// and 1.3 with rustls's default provider and cipher suites; no client
    /// certificate asked for.
    ///
    /// # Errors
    /// A file cannot be read or parsed, or the key does not match the certificate.
    pub fn from_pem(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsAcceptor, ConfigError> {
        let chain = load_certificates(cert_chain.as_ref())?;
        let key_path = key.as_ref();
        let key = load_private_key(key_path)?;
        let config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| config_error(key_path, format!("does not suit the certificate: {e}")))?;
        let mut acceptor = TlsAcceptor::new(Arc::new(config));
        acceptor.chain = Some((chain, Arc::new(key)));
        Ok(acceptor)
    }

    /// Requires every client to present a certificate that chains to a CA in the PEM
    /// file `ca` (mutual TLS); a client without one fails the handshake. Only for an
    /// acceptor made by [`from_pem`](Self::from_pem); with a `ServerConfig` of your
    /// own, set its client verifier.
    ///
    /// # Errors
    /// `ca` cannot be read or holds no usable certificate, or the acceptor was not
    /// made from PEM files.
    pub fn require_client_cert(mut self, ca: impl AsRef<Path>) -> Result<TlsAcceptor, ConfigError> {
        let ca = ca.as_ref();
        let roots = Arc::new(roots_from(ca)?);
        self.client_roots = Some(roots);
        self.rebuild(Some(ca))?;
        Ok(self)
    }

    fn rebuild(&mut self, ca: Option<&Path>) -> Result<(), ConfigError> {
        let Some((chain, key)) = &self.chain else {
            return Err(ConfigError {
                path: None,
                message: "require_client_cert needs an acceptor made by TlsAcceptor::from_pem"
                    .to_owned(),
            });
        };
        let builder = ServerConfig::builder();
        let builder = match &self.client_roots {
            Some(roots) => {
                let verifier = WebPkiClientVerifier::builder(roots.clone())
                    .build()
                    .map_err(|e| ConfigError {
                        path: ca.map(Path::to_path_buf),
                        message: format!("cannot verify clients with it: {e}"),
                    })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let alpn = self.config.alpn_protocols.clone();
        let mut config = builder
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| ConfigError {
                path: None,
                message: format!("the key does not suit the certificate: {e}"),
            })?;
        config.alpn_protocols = alpn;
        self.config = Arc::new(config);
        Ok(())
    }

    /// The ALPN protocols offered, in order of preference (a client that offers
    /// none of them fails the handshake, as rustls does).
    pub fn alpn(mut self, protocols: &[&[u8]]) -> TlsAcceptor {
        let mut config = (*self.config).clone();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        self.config = Arc::new(config);
        self
    }

    /// A handshake not finished this long after the connection was accepted is closed
    /// with [`Reason::Tls`](crate::Reason::Tls) (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(mut self, timeout: Duration) -> TlsAcceptor {
        self.handshake_timeout = timeout;
        self
    }

    /// The most ciphertext a client may send before its handshake is done (default
    /// [`DEFAULT_MAX_HANDSHAKE_BYTES`]).
    pub fn max_handshake_bytes(mut self, bytes: usize) -> TlsAcceptor {
        self.max_handshake_bytes = bytes;
        self
    }

    /// The rustls configuration in use.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    pub(crate) fn session(&self) -> Result<Session, rustls::Error> {
        let conn = rustls::ServerConnection::new(self.config.clone())?;
        Ok(Session::new(
            conn.into(),
            self.handshake_timeout,
            self.max_handshake_bytes,
        ))
    }
}

/// The client side's TLS settings: a `rustls::ClientConfig` (the roots it trusts, a
/// client certificate for mutual TLS, ALPN) and the handshake's timeout.
///
/// # Examples
///
/// ```no_run
/// use twistor::tls::TlsConnector;
///
/// // Trust the CA in ca.pem only (a private deployment, a test).
/// let tls = TlsConnector::from_ca_pem("ca.pem")?;
/// # Ok::<(), twistor::tls::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    handshake_timeout: Duration,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("handshake_timeout", &self.handshake_timeout)
            .field("alpn", &self.config.alpn_protocols)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// Uses a ready `ClientConfig`.
    pub fn new(config: Arc<ClientConfig>) -> TlsConnector {
        TlsConnector {
            config,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Trusts the CA certificates in the PEM file `ca` and nothing else.
    ///
    /// # Errors
    /// `ca` cannot be read or holds no usable certificate.
    pub fn from_ca_pem(ca: impl AsRef<Path>) -> Result<TlsConnector, ConfigError> {
        let roots = roots_from(ca.as_ref())?;
        let config = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConnector::new(Arc::new(config)))
    }

    /// Trusts the CA certificates in `ca` and presents the certificate chain and key
    /// in `cert_chain` and `key` (mutual TLS).
    ///
    /// # Errors
    /// A file cannot be read or parsed, or the key does not match the certificate.
    pub fn from_pem_with_client_cert(
        ca: impl AsRef<Path>,
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsConnector, ConfigError> {
        let roots = roots_from(ca.as_ref())?;
        let chain = load_certificates(cert_chain.as_ref())?;
        let key_path = key.as_ref();
        let key = load_private_key(key_path)?;
        let config = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| config_error(key_path, format!("does not suit the certificate: {e}")))?;
        Ok(TlsConnector::new(Arc::new(config)))
    }

    /// Trusts Mozilla's root certificates (the `webpki-roots` crate).
    #[cfg(feature = "webpki-roots")]
    pub fn webpki_roots() -> TlsConnector {
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let config = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::new(Arc::new(config))
    }

    /// The ALPN protocols to offer, in order of preference.
    pub fn alpn(mut self, protocols: &[&[u8]]) -> TlsConnector {
        let mut config = (*self.config).clone();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        self.config = Arc::new(config);
        self
    }

    /// A handshake not finished this long after the connection is up is closed with
    /// [`Reason::Tls`](crate::Reason::Tls) (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(mut self, timeout: Duration) -> TlsConnector {
        self.handshake_timeout = timeout;
        self
    }

    /// The rustls configuration in use.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    pub(crate) fn session(&self, server_name: &str) -> Result<Session, rustls::Error> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| rustls::Error::General(format!("invalid server name {server_name:?}")))?;
        let conn = rustls::ClientConnection::new(self.config.clone(), name)?;
        // The peer's whole handshake is bounded by rustls's message limits and ours.
        Ok(Session::new(
            conn.into(),
            self.handshake_timeout,
            DEFAULT_MAX_HANDSHAKE_BYTES,
        ))
    }
}

/// A TLS protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// What a connection's TLS handshake settled, from [`Context::tls`](crate::Context::tls).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The handshake is not done yet: the fields below are not settled.
    pub handshaking: bool,
    /// This end is the server.
    pub is_server: bool,
    /// The name the client asked for (SNI), on the server side.
    pub server_name: Option<String>,
    /// The peer's certificate chain, leaf first (a client's, with mutual TLS; the
    /// server's, on a client).
    pub peer_certificates: Vec<CertificateDer<'static>>,
    /// The ALPN protocol agreed on.
    pub alpn_protocol: Option<Vec<u8>>,
    /// The protocol version agreed on.
    pub version: Option<TlsVersion>,
    /// The cipher suite agreed on, by its IANA name.
    pub cipher_suite: Option<String>,
}
