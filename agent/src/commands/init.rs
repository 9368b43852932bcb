//! `init`: a config for an existing pair of databases. Both catalogs are
//! read, tables paired by name (ignoring case, `_`, `-` and spaces, as
//! `run` matches them), and a commented config written: the endpoints
//! (a password becomes a `${VAR}` reference, never written out), one
//! `[[tables]]` per pair, and comments for what could not be paired or
//! matched, with the closest candidates, and for tables without a key.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tandem_connectors::{Connector, EndpointConfig, Engine, TableName, TableSchema, TlsConfig};

use crate::config::{Side, TablePairConfig, DEFAULT_MAX_CONNECTIONS};
use crate::mapping::names::{self, NameMatching};
use crate::mapping::plan::{LookupTables, Plan, PlanProblem};
use crate::sync::preflight::key_problems;

/// What `init` was asked for.
pub struct InitArgs {
    /// The source database's URL.
    pub source: String,
    /// The target database's URL.
    pub target: String,
    /// Only these tables (source names), when given.
    pub tables: Option<Vec<String>>,
    /// The state directory to write.
    pub state_dir: Option<PathBuf>,
    /// Where to write the config (stdout when not given).
    pub output: Option<PathBuf>,
}

/// One side as given on the command line.
struct Given {
    engine: Engine,
    /// The URL to connect with (the password in it, if any).
    connect: String,
    /// The URL to write: the password replaced by `${var}`.
    written: String,
    /// The environment variable the written URL reads its password from.
    var: Option<String>,
    /// The database's name, for the default state directory.
    database: String,
}

/// Reads a URL given to `init`: its engine by scheme, its password taken
/// out for the written config, a relative SQLite file made absolute.
fn given(side: Side, url: &str) -> anyhow::Result<Given> {
    let engine = match Engine::of_database_url(url) {
        Some(engine) => engine,
        None if Engine::Http.accepts_url(url) => bail!(
            "--{side}: init reads database catalogs; describe an API's objects by hand (see docs/http.md)"
        ),
        None => bail!(
            "--{side}: {} is not a database URL (postgres://, mysql://, sqlite://, mssql://)",
            tandem_connectors::connector::redact_url(url)
        ),
    };
    if engine == Engine::Sqlite {
        let file = Path::new(&url["sqlite://".len()..]);
        let file =
            std::path::absolute(file).with_context(|| format!("--{side}: {}", file.display()))?;
        if !file.is_file() {
            bail!("--{side}: no SQLite database at {}", file.display());
        }
        let url = format!("sqlite://{}", file.display());
        return Ok(Given {
            engine,
            connect: url.clone(),
            written: url,
            var: None,
            database: file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        });
    }
    let normalized =
        url.replacen("mariadb://", "mysql://", 1)
            .replacen("sqlserver://", "mssql://", 1);
    let parsed = url::Url::parse(&normalized).with_context(|| {
        format!(
            "--{side}: {} is not a URL",
            tandem_connectors::connector::redact_url(url)
        )
    })?;
    let database = parsed.path().trim_start_matches('/').to_owned();
    let decoded = parsed
        .password()
        .map(|p| crate::config::percent_decoded(p).unwrap_or_else(|| p.to_owned()));
    // A password given as ${VAR}: read from the environment to connect,
    // and written as it is.
    if let Some(var) = decoded
        .as_deref()
        .and_then(|p| p.strip_prefix("${"))
        .and_then(|p| p.strip_suffix('}'))
    {
        let secret = std::env::var(var)
            .with_context(|| format!("--{side}: environment variable {var} is not set"))?;
        let mut connect = parsed.clone();
        connect
            .set_password(Some(&secret))
            .map_err(|()| anyhow::anyhow!("--{side}: this URL cannot carry a password"))?;
        return Ok(Given {
            engine,
            connect: connect.to_string(),
            written: normalized.clone(),
            var: Some(var.to_owned()),
            database,
        });
    }
    let (written, var) = match parsed.password() {
        Some(_) => {
            let var = format!("TANDEM_{}_PASSWORD", side.to_string().to_uppercase());
            let mut bare = parsed.clone();
            let _ = bare.set_password(None);
            let bare = bare.to_string();
            // user@host -> user:${VAR}@host
            let user = parsed.username();
            let at = format!("{}://{user}@", parsed.scheme());
            let written =
                bare.replacen(&at, &format!("{}://{user}:${{{var}}}@", parsed.scheme()), 1);
            (written, Some(var))
        }
        None => (normalized.clone(), None),
    };
    Ok(Given {
        engine,
        connect: normalized,
        written,
        var,
        database,
    })
}

async fn connect(side: Side, given: &Given) -> anyhow::Result<Arc<dyn Connector>> {
    let endpoint = EndpointConfig {
        engine: given.engine,
        url: given.connect.clone(),
        password: None,
        poll_interval: Duration::from_secs(1),
        max_connections: DEFAULT_MAX_CONNECTIONS,
        tls: TlsConfig::default_for(given.engine, &given.connect)
            .map_err(|e| anyhow::anyhow!("--{side}: {e}"))?,
        http: None,
    };
    tandem_connectors::connect(&endpoint)
        .await
        .with_context(|| format!("{side} ({})", given.engine))
}

/// Every table of a side, described.
async fn describe_all(side: Side, connector: &dyn Connector) -> anyhow::Result<Vec<TableSchema>> {
    let mut tables = Vec::new();
    for name in connector
        .list_tables()
        .await
        .with_context(|| format!("{side}: listing the tables"))?
    {
        tables.push(
            connector
                .describe(&name)
                .await
                .with_context(|| format!("{side}: describing {name}"))?,
        );
    }
    Ok(tables)
}

/// How a config names `table` on an engine: without the default schema.
fn configured(engine: Engine, table: &TableName) -> String {
    let default = engine.default_schema();
    match &table.schema {
        Some(schema) if Some(schema.as_str()) != default => format!("{schema}.{}", table.name),
        _ => table.name.clone(),
    }
}

/// A TOML string.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

pub(super) async fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    if let Some(output) = &args.output {
        if output.exists() {
            bail!(
                "--output: {} exists; choose another file, or remove it first",
                output.display()
            );
        }
    }
    let sides = [
        given(Side::Source, &args.source)?,
        given(Side::Target, &args.target)?,
    ];
    let (source, target) = tokio::join!(
        connect(Side::Source, &sides[0]),
        connect(Side::Target, &sides[1])
    );
    let connectors = [source?, target?];
    let described = [
        describe_all(Side::Source, connectors[0].as_ref()).await?,
        describe_all(Side::Target, connectors[1].as_ref()).await?,
    ];

    // Which source tables: all, or those asked for.
    let mut chosen: Vec<&TableSchema> = described[0].iter().collect();
    if let Some(wanted) = &args.tables {
        let names: Vec<&str> = described[0].iter().map(|t| t.name.name.as_str()).collect();
        let mut picked = Vec::new();
        let mut unknown = Vec::new();
        for name in wanted.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            // As a config names it (`sales.orders`), else by name.
            if let Some(table) = described[0]
                .iter()
                .find(|t| configured(sides[0].engine, &t.name) == name)
            {
                picked.push(table);
                continue;
            }
            let bare = name.rsplit_once('.').map_or(name, |(_, n)| n);
            match names::find(bare, names.iter().copied(), NameMatching::Fold) {
                Ok(found) => picked.extend(described[0].iter().filter(|t| t.name.name == found)),
                Err(miss) => unknown.push(format!(
                    "--tables: no table {name} in the source database{}",
                    miss.hint()
                )),
            }
        }
        if !unknown.is_empty() {
            bail!(unknown.join("\n"));
        }
        chosen = picked;
    }

    // Pair by name; tables without a key are set aside with the reason.
    let mut pairs: Vec<(&TableSchema, &TableSchema)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut paired_targets: BTreeSet<&TableName> = BTreeSet::new();
    let target_names: Vec<&str> = described[1].iter().map(|t| t.name.name.as_str()).collect();
    for table in &chosen {
        let shown = configured(sides[0].engine, &table.name);
        let found = match names::find(
            &table.name.name,
            target_names.iter().copied(),
            NameMatching::Fold,
        ) {
            Ok(name) => described[1].iter().find(|t| t.name.name == name),
            Err(names::Miss::Ambiguous(all)) => {
                notes.push(format!(
                    "source table {shown}: target tables {} all match its name: pair one by hand",
                    all.join(" and ")
                ));
                None
            }
            Err(names::Miss::Unknown(close)) => {
                notes.push(format!(
                    "source table {shown}: no table of that name in the target{}",
                    close
                        .map(|c| format!(" (closest: {c})"))
                        .unwrap_or_default()
                ));
                None
            }
        };
        let Some(other) = found else { continue };
        if !paired_targets.insert(&other.name) {
            // Two source tables of one name, in two schemas.
            notes.push(format!(
                "source table {shown}: its match, target table {}, is paired with another source table",
                configured(sides[1].engine, &other.name)
            ));
            continue;
        }
        let keyless: Vec<String> = [(Side::Source, *table), (Side::Target, other)]
            .iter()
            .filter(|(_, t)| t.primary_key.is_empty())
            .map(|(side, t)| {
                format!(
                    "{side} table {}",
                    configured(sides[side.index()].engine, &t.name)
                )
            })
            .collect();
        if !keyless.is_empty() {
            notes.push(format!(
                "{} <-> {}: no primary key on the {}; add one to sync it (records are linked by key)",
                shown,
                configured(sides[1].engine, &other.name),
                keyless.join(" and the ")
            ));
            continue;
        }
        pairs.push((table, other));
    }
    if args.tables.is_none() {
        let source_names: Vec<&str> = described[0].iter().map(|t| t.name.name.as_str()).collect();
        for table in described[1]
            .iter()
            .filter(|t| !paired_targets.contains(&t.name))
        {
            let close = names::closest(&table.name.name, source_names.iter().copied());
            notes.push(format!(
                "target table {}: no table of that name in the source{}",
                configured(sides[1].engine, &table.name),
                close
                    .map(|c| format!(" (closest: {c})"))
                    .unwrap_or_default()
            ));
        }
    }

    // What `check` will say about each pair, written beside it.
    let configs: Vec<TablePairConfig> = pairs
        .iter()
        .map(|(s, t)| {
            let source = configured(sides[0].engine, &s.name);
            TablePairConfig {
                name: source.clone(),
                source,
                target: Some(configured(sides[1].engine, &t.name)),
                match_on: Vec::new(),
                directions: Default::default(),
                splits: Vec::new(),
            }
        })
        .collect();
    let schemas = pairs
        .iter()
        .map(|(s, t)| Some([(*s).clone(), (*t).clone()]))
        .collect();
    let (plan, mut problems) =
        Plan::build(&configs, schemas, &LookupTables::new(), NameMatching::Fold);
    problems.extend(key_problems(&plan, |side, table| {
        connectors[side.index()].generated_key_fix(table)
    }));

    let state_dir = args.state_dir.clone().unwrap_or_else(|| {
        let name = args
            .output
            .as_ref()
            .and_then(|o| o.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("{}-{}", sides[0].database, sides[1].database));
        PathBuf::from("/var/lib/tandem").join(name)
    });
    let text = render(&sides, &state_dir, &configs, &problems, &notes);
    match &args.output {
        Some(output) => {
            std::fs::write(output, &text)
                .with_context(|| format!("--output: cannot write {}", output.display()))?;
            let shown = output.display();
            eprintln!("wrote {shown}: {} table pair(s)", configs.len());
            for side in &sides {
                if let Some(var) = &side.var {
                    eprintln!("the password is read from the environment variable {var}: set it where the agent runs");
                }
            }
            eprintln!(
                "next: tandem-agent check --config {shown}; tandem-agent plan --config {shown}; \
                 tandem-agent install-triggers --config {shown}; then run it"
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The config file's text.
fn render(
    sides: &[Given; 2],
    state_dir: &Path,
    configs: &[TablePairConfig],
    problems: &[PlanProblem],
    notes: &[String],
) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Written by `tandem-agent init` on {}, from the source {} and the target {}.\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        tandem_connectors::connector::redact_url(&sides[0].connect),
        tandem_connectors::connector::redact_url(&sides[1].connect),
    ));
    out.push_str(
        "# Tables are paired by name, ignoring case, `_`, `-` and spaces; so are their\n\
         # columns. A foreign key to a synced table is translated through that table's\n\
         # links. Next: `tandem-agent check` and `tandem-agent plan` with --config this\n\
         # file, then `tandem-agent install-triggers`, then `tandem-agent run`.\n\n",
    );
    out.push_str(&format!(
        "state_dir = {}   # the agent's change log and ID map\n",
        quoted(&state_dir.display().to_string())
    ));
    for (side, given) in Side::BOTH.iter().zip(sides) {
        out.push_str(&format!(
            "\n[{side}]\nkind = {}\n",
            quoted(&given.engine.to_string())
        ));
        out.push_str(&format!("url = {}", quoted(&given.written)));
        if let Some(var) = &given.var {
            out.push_str(&format!(
                "   # the password: from the environment variable {var}"
            ));
        }
        out.push('\n');
    }
    for config in configs {
        out.push_str(&format!(
            "\n[[tables]]\nsource = {}\ntarget = {}\n",
            quoted(&config.source),
            quoted(config.target.as_deref().unwrap_or_default())
        ));
        let prefix = format!("pair {}: ", config.name);
        for problem in problems.iter().filter(|p| p.message.starts_with(&prefix)) {
            out.push_str(&format!(
                "# {}: {}\n",
                if problem.fatal { "problem" } else { "warning" },
                &problem.message[prefix.len()..]
            ));
        }
    }
    if !notes.is_empty() {
        out.push_str(
            "\n# Not paired (a [[tables]] entry with source and target pairs one by hand):\n",
        );
        for note in notes {
            out.push_str(&format!("# {note}\n"));
        }
    }
    out
}
