//! TLS for PostgreSQL connections with libpq's meaning of `sslmode`, `sslrootcert`, `sslcert` and
//! `sslkey`.
//!
//! tokio-postgres understands only `sslmode=disable|prefer|require` and rejects the other options
//! as unknown, so they are taken out of the connection string here, before the driver parses it,
//! and turned into a rustls configuration:
//! - `disable` never starts TLS; `allow` and `prefer` use TLS when the server offers it; `require`
//!   insists on it. None of these check the server certificate, exactly as libpq, except that
//!   `require` with an explicit `sslrootcert` behaves like `verify-ca` (libpq does the same).
//! - `verify-ca` checks that the certificate chains to a CA in `sslrootcert`; `verify-full`
//!   also checks that it names the host connected to.
//! - `sslrootcert` is a PEM file of CA certificates, `system` for the system's public CAs, and
//!   defaults to `~/.postgresql/root.crt` as in libpq.
//! - `sslcert`/`sslkey` are a PEM client certificate and its unencrypted key, defaulting to
//!   `~/.postgresql/postgresql.crt`/`.key` when those exist.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connection-string keys this module handles instead of the driver.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "unknown sslmode={other} (use disable, allow, prefer, require, verify-ca or verify-full)"
                ))
            }
        })
    }

    /// The value as libpq spells it (for `PGSSLMODE` of child tools and for messages).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What the driver itself must enforce; certificate checks are rustls's job.
    pub fn driver_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self {
            SslMode::Disable => Driver::Disable,
            SslMode::Allow | SslMode::Prefer => Driver::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Driver::Require,
        }
    }
}

/// Where the trusted CAs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    File(PathBuf),
    /// `sslrootcert=system`: the public CAs (Mozilla's list, as shipped by webpki-roots).
    System,
}

/// The TLS settings of one connection target, read once when the target is parsed.
#[derive(Clone)]
pub struct PgTls {
    pub mode: SslMode,
    pub root_certs: Option<RootCerts>,
    /// Client certificate and key files.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    connector: MakeRustlsConnect,
}

impl std::fmt::Debug for PgTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTls")
            .field("mode", &self.mode)
            .field("root_certs", &self.root_certs)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

impl PgTls {
    /// Takes the TLS keys out of `conn` (a URL or a libpq `key=value` string) and returns the rest,
    /// for the driver, with the settings they describe. Errors are one line, meant to follow
    /// "invalid PostgreSQL URL ...: ".
    pub fn split(conn: &str) -> Result<(String, PgTls), String> {
        let (rest, params) = take_tls_params(conn)?;
        let get = |key: &str| {
            params
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let explicit_root = get("sslrootcert").map(|v| match v {
            "system" => RootCerts::System,
            path => RootCerts::File(expand_home(path)),
        });
        let mut mode = match get("sslmode") {
            Some(v) => SslMode::parse(v)?,
            None => SslMode::Prefer,
        };
        if mode == SslMode::Require && explicit_root.is_some() {
            mode = SslMode::VerifyCa;
        }
        let verifies = matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull);
        let root_certs = match explicit_root {
            Some(root) => Some(root),
            None if verifies => match default_file("root.crt") {
                Some(path) => Some(RootCerts::File(path)),
                None => {
                    return Err(format!(
                        "sslmode={} needs the CA that signed the server certificate: add \
                         sslrootcert=/path/to/ca.crt (or sslrootcert=system for public CAs)",
                        mode.as_str()
                    ))
                }
            },
            None => None,
        };
        let client_cert =
            match (get("sslcert"), get("sslkey")) {
                (Some(cert), Some(key)) => Some((expand_home(cert), expand_home(key))),
                (Some(_), None) | (None, Some(_)) => return Err(
                    "sslcert and sslkey go together: give both the client certificate and its key"
                        .into(),
                ),
                (None, None) => default_file("postgresql.crt").zip(default_file("postgresql.key")),
            };
        let config = client_config(mode, root_certs.as_ref(), client_cert.as_ref())?;
        Ok((
            rest,
            PgTls {
                mode,
                root_certs,
                client_cert,
                connector: MakeRustlsConnect::new(config),
            },
        ))
    }

    /// The connection string without its TLS keys, for checking its syntax without reading any
    /// certificate file (configuration is checked before it is known which engines a command uses).
    pub fn strip(conn: &str) -> Result<String, String> {
        let (rest, params) = take_tls_params(conn)?;
        for (key, value) in &params {
            if key == "sslmode" {
                SslMode::parse(value)?;
            }
        }
        Ok(rest)
    }

    pub fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }

    /// libpq environment variables that give child tools (pg_dump, psql) the same TLS settings.
    pub fn libpq_env(&self) -> Vec<(&'static str, PathBuf)> {
        let mut env = vec![("PGSSLMODE", PathBuf::from(self.mode.as_str()))];
        match &self.root_certs {
            Some(RootCerts::File(path)) => env.push(("PGSSLROOTCERT", path.clone())),
            Some(RootCerts::System) => env.push(("PGSSLROOTCERT", PathBuf::from("system"))),
            None => {}
        }
        if let Some((cert, key)) = &self.client_cert {
            env.push(("PGSSLCERT", cert.clone()));
            env.push(("PGSSLKEY", key.clone()));
        }
        env
    }

    /// What to do about a failed TLS handshake, when `error`'s chain holds a rustls error.
    pub fn explain(&self, error: &(dyn std::error::Error + 'static), host: &str) -> Option<String> {
        let tls = find_rustls_error(error)?;
        let roots = match &self.root_certs {
            Some(RootCerts::File(path)) => format!("sslrootcert={}", path.display()),
            Some(RootCerts::System) => "the system's public CAs (sslrootcert=system)".into(),
            None => "sslrootcert".into(),
        };
        Some(match tls {
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "the server certificate is not valid for host {host} (sslmode=verify-full); connect \
                 with a host name the certificate lists, or use sslmode=verify-ca to check only the CA"
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ) => format!(
                "the server certificate is not signed by a CA in {roots}; point sslrootcert at the \
                 CA that issued the server's certificate"
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => "the server certificate has expired; the server needs a renewed certificate".into(),
            rustls::Error::InvalidCertificate(other) => {
                format!("the server certificate was rejected ({other:?}), checked against {roots}")
            }
            rustls::Error::AlertReceived(alert) => match &self.client_cert {
                Some((cert, _)) => format!(
                    "the server refused the TLS handshake ({alert:?}); check that the client \
                     certificate sslcert={} is signed by a CA the server trusts",
                    cert.display()
                ),
                None => format!(
                    "the server refused the TLS handshake ({alert:?}); it may require a client \
                     certificate (sslcert and sslkey)"
                ),
            },
            other => format!("TLS handshake failed: {other}"),
        })
    }
}

/// Splits the TLS keys from the others, keeping the others' text as it was.
fn take_tls_params(conn: &str) -> Result<(String, Vec<(String, String)>), String> {
    if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        let Some((base, query)) = conn.split_once('?') else {
            return Ok((conn.to_string(), Vec::new()));
        };
        let mut kept = Vec::new();
        let mut taken = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(key)?;
            if TLS_KEYS.contains(&key.as_str()) {
                taken.push((key, percent_decode(value)?));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok((rest, taken))
    } else {
        let mut kept = Vec::new();
        let mut taken = Vec::new();
        for (key, raw, value) in keyword_pairs(conn)? {
            if TLS_KEYS.contains(&key.as_str()) {
                taken.push((key, value));
            } else {
                kept.push(format!("{key}={raw}"));
            }
        }
        Ok((kept.join(" "), taken))
    }
}

fn percent_decode(text: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("connection parameter {text:?} is not UTF-8 once decoded"))
}

/// libpq's `key = value` syntax: values are bare words or single-quoted with backslash escapes.
/// Returns each key with its value as written (to pass on untouched) and as meant.
fn keyword_pairs(conn: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = conn.char_indices().peekable();
    let skip_ws = |chars: &mut std::iter::Peekable<std::str::CharIndices>| {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    };
    loop {
        skip_ws(&mut chars);
        let Some(&(key_start, _)) = chars.peek() else {
            return Ok(pairs);
        };
        let mut key_end = conn.len();
        while let Some(&(i, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                key_end = i;
                break;
            }
            chars.next();
        }
        let key = conn[key_start..key_end].to_string();
        skip_ws(&mut chars);
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            return Err(format!(
                "missing \"=\" after {key:?} in the connection string"
            ));
        }
        skip_ws(&mut chars);
        let value_start = chars.peek().map_or(conn.len(), |&(i, _)| i);
        let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
        let mut value = String::new();
        let mut closed = !quoted;
        while let Some((_, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| c)),
                '\'' if quoted => {
                    closed = true;
                    break;
                }
                c if c.is_whitespace() && !quoted => break,
                c => value.push(c),
            }
        }
        if !closed {
            return Err(format!(
                "unterminated quoted value for {key:?} in the connection string"
            ));
        }
        let value_end = chars.peek().map_or(conn.len(), |&(i, _)| i);
        let raw = conn[value_start..value_end].trim_end().to_string();
        pairs.push((key, raw, value));
    }
}

/// `~/...` as libpq expands it in file options.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// libpq's default location for a TLS file, when it exists.
fn default_file(name: &str) -> Option<PathBuf> {
    let path = Path::new(&std::env::var_os("HOME")?)
        .join(".postgresql")
        .join(name);
    path.is_file().then_some(path)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(
    mode: SslMode,
    roots: Option<&RootCerts>,
    client_cert: Option<&(PathBuf, PathBuf)>,
) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = root_store(roots.expect("verify modes always have root certificates"))?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("cannot use the CA certificates: {e}"))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(IgnoreHostName(webpki))
            }
        }
        _ => Arc::new(AcceptAnyServerCert(provider.clone())),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_path, key_path)) => {
            let chain = read_certs(cert_path, "sslcert")?;
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
                format!(
                    "sslkey {}: cannot read a PEM private key ({e}); the key must be unencrypted \
                     PEM (PKCS#8, PKCS#1 or SEC1)",
                    key_path.display()
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!(
                    "sslcert {} and sslkey {} do not make a usable client certificate: {e}",
                    cert_path.display(),
                    key_path.display()
                )
            })
        }
    }
}

fn root_store(roots: &RootCerts) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match roots {
        RootCerts::System => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        RootCerts::File(path) => {
            for cert in read_certs(path, "sslrootcert")? {
                store.add(cert).map_err(|e| {
                    format!(
                        "sslrootcert {}: unusable CA certificate: {e}",
                        path.display()
                    )
                })?;
            }
        }
    }
    Ok(store)
}

/// Every certificate in a PEM file; an empty or unreadable file is an error naming the option.
fn read_certs(path: &Path, option: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |e: &dyn std::fmt::Display| format!("{option} {}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no PEM certificate in the file"));
    }
    Ok(certs)
}

fn find_rustls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        current = e.source();
    }
    None
}

/// `verify-ca`: the chain must lead to a trusted CA, whatever host name the certificate names.
/// webpki checks the name last, so a name error means everything else passed.
#[derive(Debug)]
struct IgnoreHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// libpq's `prefer` and `require` encrypt but do not check the certificate. The handshake
/// signatures are still checked, so the connection is at least bound to the presented key.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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

    fn split(conn: &str) -> (String, PgTls) {
        PgTls::split(conn).unwrap()
    }

    #[test]
    fn tls_keys_leave_the_url_and_the_rest_stays() {
        let (rest, tls) =
            split("postgres://u:p@h:5/db?application_name=x&sslmode=require&connect_timeout=3");
        assert_eq!(
            rest,
            "postgres://u:p@h:5/db?application_name=x&connect_timeout=3"
        );
        assert_eq!(tls.mode, SslMode::Require);
        let (rest, tls) = split("postgres://h/db?sslmode=disable");
        assert_eq!(rest, "postgres://h/db");
        assert_eq!(tls.mode, SslMode::Disable);
    }

    #[test]
    fn keyword_strings_keep_quoted_values() {
        let (rest, tls) = split("host=h password='a b\\'c' sslmode = disable dbname=d");
        assert_eq!(rest, "host=h password='a b\\'c' dbname=d");
        assert_eq!(tls.mode, SslMode::Disable);
        assert!(PgTls::split("host=h password='open").is_err());
        assert!(PgTls::split("host").is_err());
    }

    #[test]
    fn verify_modes_need_a_readable_ca_file() {
        let err =
            PgTls::split("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt")
                .unwrap_err();
        assert!(err.starts_with("sslrootcert /nonexistent/ca.crt:"), "{err}");
        let err = PgTls::split("postgres://h/db?sslmode=verify-everything").unwrap_err();
        assert!(err.contains("verify-full"), "{err}");
        let err = PgTls::split("postgres://h/db?sslcert=/a.crt").unwrap_err();
        assert!(err.contains("sslkey"), "{err}");
    }

    #[test]
    fn require_with_a_root_certificate_means_verify_ca() {
        let (_, tls) = split("postgres://h/db?sslmode=require&sslrootcert=system");
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(tls.root_certs, Some(RootCerts::System));
        assert!(tls
            .libpq_env()
            .contains(&("PGSSLMODE", PathBuf::from("verify-ca"))));
    }
}
