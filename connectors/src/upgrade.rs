//! The numbered upgrade steps of Tandem's own tables, per engine, and the
//! script that brings a database from the version it records to this
//! build's [`SCHEMA_VERSION`].
//!
//! Step N lives in `sql/<engine>/upgrade/NNNN_<what>.sql` and brings an
//! installation from version N - 1 to N (step 1 from nothing). Each step is
//! followed by `sql/<engine>/set_version.sql`, which records its number:
//! in the step's transaction where the engine's DDL is transactional
//! (PostgreSQL, SQLite, SQL Server run the whole script in one), right after
//! it on MySQL / MariaDB, which commit each DDL statement by themselves; so
//! every step is written to change nothing when it already ran, and a step
//! that failed half-way there is run again in full. `sql/README.md` says how
//! to write one.
//!
//! The capture triggers are not steps: they follow the configured tables,
//! and every install writes them again where they differ.

use crate::connector::SCHEMA_VERSION;
use crate::engine::Engine;
use crate::error::ConnectorError;
use crate::template;

/// One numbered step: its file's name under `sql/<engine>/upgrade/` and
/// its SQL, statements separated by lines holding only `-- ;;`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The file's name, `NNNN_<what>.sql`.
    pub file: &'static str,
    /// The file's text.
    pub sql: &'static str,
}

/// The steps of one engine's folder, in order, embedded.
macro_rules! steps {
    ($engine:literal: $($file:literal),+ $(,)?) => {
        &[$(Step {
            file: $file,
            sql: include_str!(concat!("../../sql/", $engine, "/upgrade/", $file)),
        }),+]
    };
}

const POSTGRES: &[Step] = steps!("postgres": "0001_tables.sql", "0002_waiting_and_no_op_check.sql");
const MYSQL: &[Step] = steps!("mysql": "0001_tables.sql", "0002_unchanged.sql");
const SQLITE: &[Step] = steps!("sqlite": "0001_tables.sql", "0002_unchanged.sql");
const MSSQL: &[Step] = steps!("mssql": "0001_tables.sql", "0002_unchanged.sql");

/// The steps of `engine`: step N at index N - 1. An API has none.
pub fn steps(engine: Engine) -> &'static [Step] {
    match engine {
        Engine::Postgres => POSTGRES,
        Engine::Mysql => MYSQL,
        Engine::Sqlite => SQLITE,
        Engine::Mssql => MSSQL,
        Engine::Http => &[],
    }
}

/// The statement that records a step's number (`{{version}}`).
fn set_version(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => include_str!("../../sql/postgres/set_version.sql"),
        Engine::Mysql => include_str!("../../sql/mysql/set_version.sql"),
        Engine::Sqlite => include_str!("../../sql/sqlite/set_version.sql"),
        Engine::Mssql => include_str!("../../sql/mssql/set_version.sql"),
        Engine::Http => "",
    }
}

/// Where `engine` keeps the installed version, for messages.
pub fn version_table(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres | Engine::Mssql => "tandem.version",
        Engine::Mysql | Engine::Sqlite | Engine::Http => "tandem_version",
    }
}

/// Why a database cannot be brought to a version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// The database is at a version a newer build installed: this build
    /// would not know its objects, and never downgrades them.
    #[error(
        "{table} records schema version {installed}, written by a newer tandem-agent (this \
         build knows versions up to {known}): upgrade tandem-agent"
    )]
    Newer {
        /// The version table.
        table: &'static str,
        /// The version the database records.
        installed: i32,
        /// [`SCHEMA_VERSION`].
        known: i32,
    },
    /// A version this build has no steps up to (a bug: asked beyond
    /// [`SCHEMA_VERSION`]).
    #[error("{engine} has no upgrade step {to} (this build has {steps})")]
    NoStep {
        /// The engine.
        engine: Engine,
        /// The version asked for.
        to: i32,
        /// The steps there are.
        steps: usize,
    },
}

impl From<UpgradeError> for ConnectorError {
    fn from(e: UpgradeError) -> ConnectorError {
        let message = e.to_string();
        match e {
            UpgradeError::Newer { .. } => ConnectorError::schema(message),
            UpgradeError::NoStep { .. } => ConnectorError::internal(message),
        }
    }
}

/// The statements that bring a database of `engine` at version `installed`
/// (`None`: nothing installed) to version `to`: each step above
/// `installed`, its statements followed by the one that records its number.
/// Empty when the database is at `to` or above it, up to [`SCHEMA_VERSION`];
/// a database newer than that is refused. A version below 1 (never
/// written by any release) runs every step, which is safe as steps change
/// nothing that is already there.
pub fn script(
    engine: Engine,
    installed: Option<i32>,
    to: i32,
) -> Result<Vec<String>, UpgradeError> {
    let steps = steps(engine);
    let installed = installed.unwrap_or(0);
    if installed > SCHEMA_VERSION {
        return Err(UpgradeError::Newer {
            table: version_table(engine),
            installed,
            known: SCHEMA_VERSION,
        });
    }
    if usize::try_from(to).map_or(true, |to| to > steps.len()) {
        return Err(UpgradeError::NoStep {
            engine,
            to,
            steps: steps.len(),
        });
    }
    let mut out = Vec::new();
    for version in installed.max(0) + 1..=to {
        let step = &steps[usize::try_from(version - 1).expect("steps are numbered from 1")];
        out.extend(template::statements(step.sql));
        out.extend(template::fill_statements(
            set_version(engine),
            &[("version", &version.to_string())],
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENGINES: [(Engine, &str); 4] = [
        (Engine::Postgres, "postgres"),
        (Engine::Mysql, "mysql"),
        (Engine::Sqlite, "sqlite"),
        (Engine::Mssql, "mssql"),
    ];

    #[test]
    fn every_engine_has_one_step_per_version_as_its_folder_holds() {
        for (engine, folder) in ENGINES {
            let listed: Vec<&str> = steps(engine).iter().map(|s| s.file).collect();
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../sql")
                .join(folder)
                .join("upgrade");
            let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            on_disk.sort();
            assert_eq!(listed, on_disk, "{engine}: the list and the folder differ");
            assert_eq!(listed.len(), SCHEMA_VERSION as usize, "{engine}");
            for (i, file) in listed.iter().enumerate() {
                let number = format!("{:04}_", i + 1);
                assert!(
                    file.starts_with(&number),
                    "{engine}: step {} is {file}",
                    i + 1
                );
                assert!(file.ends_with(".sql"), "{engine}: {file}");
            }
        }
    }

    #[test]
    fn a_script_runs_the_steps_above_the_installed_version_and_records_each() {
        for (engine, _) in ENGINES {
            let all = script(engine, None, SCHEMA_VERSION).unwrap();
            let mut expected = Vec::new();
            for (i, step) in steps(engine).iter().enumerate() {
                expected.extend(template::statements(step.sql));
                expected.extend(template::fill_statements(
                    set_version(engine),
                    &[("version", &(i + 1).to_string())],
                ));
            }
            assert_eq!(all, expected, "{engine}");
            assert!(all.iter().all(|s| !s.contains("{{")), "{engine}");
            let last = all.last().unwrap();
            assert!(
                last.contains(&SCHEMA_VERSION.to_string()),
                "{engine}: {last}"
            );
            // From version 1: the steps after it only.
            let from_one = script(engine, Some(1), SCHEMA_VERSION).unwrap();
            let first = script(engine, None, 1).unwrap();
            assert_eq!([first, from_one].concat(), all, "{engine}");
            // Up to date, or a version below `to`: nothing.
            assert!(script(engine, Some(SCHEMA_VERSION), SCHEMA_VERSION)
                .unwrap()
                .is_empty());
            assert!(script(engine, Some(SCHEMA_VERSION), 1).unwrap().is_empty());
            // Nothing recorded below 1: every step again.
            assert_eq!(script(engine, Some(0), SCHEMA_VERSION).unwrap(), all);
        }
    }

    #[test]
    fn a_newer_installation_is_refused_by_name() {
        let err = script(Engine::Mysql, Some(SCHEMA_VERSION + 1), SCHEMA_VERSION).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "tandem_version records schema version {}, written by a newer tandem-agent \
                 (this build knows versions up to {SCHEMA_VERSION}): upgrade tandem-agent",
                SCHEMA_VERSION + 1
            )
        );
        let err = ConnectorError::from(
            script(Engine::Postgres, Some(SCHEMA_VERSION + 1), SCHEMA_VERSION).unwrap_err(),
        );
        assert_eq!(err.kind(), crate::ErrorKind::Schema);
        assert!(
            err.to_string().starts_with("tandem.version records"),
            "{err}"
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn a_version_without_a_step_is_a_bug() {
        let err = script(Engine::Sqlite, None, SCHEMA_VERSION + 1).unwrap_err();
        assert!(matches!(err, UpgradeError::NoStep { .. }), "{err}");
        assert_eq!(ConnectorError::from(err).kind(), crate::ErrorKind::Internal);
    }

    #[test]
    fn the_version_is_never_lowered() {
        for (engine, _) in ENGINES {
            let write = template::fill_statements(set_version(engine), &[("version", "7")]);
            assert_eq!(write.len(), 1, "{engine}");
            assert!(
                write[0].contains("< 7")
                    || write[0].contains("version < excluded.version")
                    || write[0].contains("GREATEST(version, 7)"),
                "{engine}: {}",
                write[0]
            );
        }
    }
}
