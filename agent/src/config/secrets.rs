//! Passwords: where each endpoint's is read (`${VAR}` references,
//! `password_env`, `password_file`), checked with the rest of the file;
//! reading them (step 2 of loading); and the refusal of a file every user
//! can read that holds one written out.

use std::path::{Path, PathBuf};

use tandem_connectors::connector::redact_url;
use tandem_connectors::{Engine, ExposeSecret, SecretString};

use super::raw::RawEndpoint;
use super::{ConfigError, Problems};

/// The name `${NAME}` refers to, when `text` is such a reference; an error
/// when it holds `${` otherwise (a typo would otherwise become a password).
fn env_reference(text: &str) -> Result<Option<&str>, String> {
    let Some(inner) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
        return if text.contains("${") {
            Err("write an environment variable as the whole value, ${NAME}".to_owned())
        } else {
            Ok(None)
        };
    };
    let valid = inner
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(Some(inner))
    } else {
        Err(format!(
            "{text:?} is not an environment variable reference like ${{NAME}}"
        ))
    }
}

/// The value of the environment variable `name`, for the field `field`.
fn env_secret(path: &Path, field: &str, name: &str) -> Result<SecretString, ConfigError> {
    std::env::var(name).map(SecretString::from).map_err(|e| {
        let why = match e {
            std::env::VarError::NotPresent => "is not set",
            std::env::VarError::NotUnicode(_) => "is not valid UTF-8",
        };
        ConfigError::new(path, format!("{field}: environment variable {name} {why}"))
    })
}

/// `%XX` escapes decoded (URL passwords hold `$`, `{`, `}` that way).
pub(crate) fn percent_decoded(part: &str) -> Option<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(part.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where an endpoint's password is read: found and checked in step 1 of
/// loading, read in step 2.
#[derive(Debug)]
pub(super) struct PasswordSources {
    /// The `${VAR}` password of the URL (taken out of it).
    url: Option<Source>,
    /// The `password`, `password_env` or `password_file` key; wins over the
    /// URL's.
    key: Option<Source>,
}

/// One place a password is read from.
#[derive(Debug)]
enum Source {
    /// Written out in the file (`password = "..."`).
    Written(SecretString),
    /// An environment variable, named by the key `field`.
    Env { field: String, var: String },
    /// A file, named by the key `field`; its path made absolute.
    File { field: String, file: PathBuf },
}

impl Source {
    /// The password (step 2); errors name the key that says where it is.
    fn read(&self, path: &Path) -> Result<SecretString, ConfigError> {
        match self {
            Source::Written(secret) => Ok(secret.clone()),
            Source::Env { field, var } => env_secret(path, field, var),
            Source::File { field, file } => std::fs::read_to_string(file)
                .map(|secret| secret.trim_end_matches(['\n', '\r']).into())
                .map_err(|e| {
                    ConfigError::new(
                        path,
                        format!("{field}: cannot read {}: {e}", file.display()),
                    )
                }),
        }
    }
}

impl PasswordSources {
    /// Finds where the password of endpoint `at` is read, without reading
    /// it (step 1): a `${VAR}` password in its `url` is taken out of the
    /// URL (the URL is returned without it); at most one of `password`,
    /// `password_env` and `password_file` may be set. Fields holding a
    /// password written out are added to `literal_secrets`.
    pub(super) fn check(
        path: &Path,
        base: &Path,
        at: &str,
        engine: Engine,
        mut url: String,
        raw: &RawEndpoint,
        literal_secrets: &mut Vec<String>,
    ) -> Result<(String, PasswordSources), ConfigError> {
        let keys = [
            raw.password.is_some(),
            raw.password_env.is_some(),
            raw.password_file.is_some(),
        ];
        if keys.iter().filter(|set| **set).count() > 1 {
            return Err(ConfigError::new(
                path,
                format!("{at}: set one of password, password_env and password_file, not several"),
            ));
        }
        // The URL's own password (SQLite URLs have none).
        let mut in_url = None;
        if engine != Engine::Sqlite {
            let mut parsed = url::Url::parse(&url).map_err(|_| {
                ConfigError::new(path, format!("{at}.url: {} is not a URL", redact_url(&url)))
            })?;
            if let Some(written) = parsed.password() {
                let written = percent_decoded(written).unwrap_or_else(|| written.to_owned());
                let field = format!("{at}.url");
                match env_reference(&written)
                    .map_err(|e| ConfigError::new(path, format!("{field}: password: {e}")))?
                {
                    Some(var) => {
                        in_url = Some(Source::Env {
                            field,
                            var: var.to_owned(),
                        });
                        // The reference is not a password: out of the URL.
                        let _ = parsed.set_password(None);
                        url = parsed.to_string();
                    }
                    None => literal_secrets.push(field),
                }
            }
        }
        let key = if let Some(text) = &raw.password {
            let field = format!("{at}.password");
            match env_reference(text.expose_secret())
                .map_err(|e| ConfigError::new(path, format!("{field}: {e}")))?
            {
                Some(var) => Some(Source::Env {
                    field,
                    var: var.to_owned(),
                }),
                None => {
                    literal_secrets.push(field);
                    Some(Source::Written(text.clone()))
                }
            }
        } else if let Some(var) = &raw.password_env {
            Some(Source::Env {
                field: format!("{at}.password_env"),
                var: var.clone(),
            })
        } else {
            raw.password_file.as_ref().map(|file| Source::File {
                field: format!("{at}.password_file"),
                file: if file.is_relative() {
                    base.join(file)
                } else {
                    file.clone()
                },
            })
        };
        Ok((url, PasswordSources { url: in_url, key }))
    }

    /// Reads the password (step 2): the key's, else the URL's. Every
    /// problem is reported.
    pub(super) fn read(&self, path: &Path) -> Result<Option<SecretString>, ConfigError> {
        let mut problems = Problems::default();
        let in_url = self.url.as_ref().map(|s| problems.take(s.read(path)));
        let key = self.key.as_ref().map(|s| problems.take(s.read(path)));
        if problems.0.is_empty() {
            Ok(key.or(in_url).flatten())
        } else {
            Err(ConfigError::many(path, problems.0))
        }
    }
}

/// The permission bits of a file (`None` where there are none to read).
pub(super) fn file_mode(metadata: &std::fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(metadata.permissions().mode())
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        None
    }
}

/// Refuses a config file that every user may read (`mode & 0o004`) when it
/// holds a password written out.
pub(super) fn refuse_readable_secrets(
    path: &Path,
    mode: Option<u32>,
    literal_secrets: &[String],
) -> Result<(), ConfigError> {
    match mode {
        Some(mode) if mode & 0o004 != 0 && !literal_secrets.is_empty() => Err(ConfigError::new(
            path,
            format!(
                "every user can read this file and it holds a password ({}): run `chmod 640 {}`, or take the password from password_file or an environment variable (${{VAR}})",
                literal_secrets.join(", "),
                path.display()
            ),
        )),
        _ => Ok(()),
    }
}
