//! A small business database, as users have them: nine related tables (a
//! self-reference, a link table keyed by two foreign keys, NOT NULL and
//! nullable columns, decimals, dates, text beyond ASCII), in the naming
//! style each engine's users favour: snake_case on PostgreSQL
//! (`order_line.order_line_id`), PascalCase on MariaDB and SQLite
//! (`OrderLine.OrderLineId`).
//!
//! Facts about the data are read by what references point to (an order
//! line's order note and product name), never by raw ids, so two sides
//! whose ids differ can be compared.

use std::collections::BTreeMap;

use super::{Db, Engine};

/// The tables, parents first, as named on PostgreSQL.
pub const TABLES: [&str; 9] = [
    "customer",
    "employee",
    "category",
    "supplier",
    "product",
    "product_supplier",
    "sales_order",
    "order_line",
    "payment",
];

/// `snake_name` in the naming style of `db`'s engine.
pub fn styled(db: &Db, snake_name: &str) -> String {
    match db.engine {
        Engine::Postgres => snake_name.to_owned(),
        Engine::Mysql | Engine::Sqlite => snake_name
            .split('_')
            .map(|word| {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|first| first.to_uppercase().chain(chars).collect::<String>())
                    .unwrap_or_default()
            })
            .collect(),
    }
}

/// `sql` with every `{snake_name}` replaced by the name in `db`'s style,
/// quoted.
pub fn sql(db: &Db, sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').expect("a closing brace") + start;
        out.push_str(&rest[..start]);
        out.push_str(&db.q(&styled(db, &rest[start + 1..end])));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Creates the nine tables in `db`.
pub async fn create(db: &Db) {
    let id = db.id();
    let (text, short, stamp) = match db.engine {
        Engine::Postgres => ("TEXT", "VARCHAR(20)", "TIMESTAMP"),
        Engine::Mysql => ("VARCHAR(200)", "VARCHAR(20)", "DATETIME"),
        Engine::Sqlite => ("TEXT", "VARCHAR(20)", "TIMESTAMP"),
    };
    let statements = [
        format!(
            "CREATE TABLE {{customer}} ({{customer_id}} {id}, {{name}} {text} NOT NULL, {{email}} {text}, \
             {{country}} {text}, {{credit_limit}} NUMERIC(12, 2), {{created_on}} DATE NOT NULL)"
        ),
        format!(
            "CREATE TABLE {{employee}} ({{employee_id}} {id}, {{full_name}} {text} NOT NULL, \
             {{manager_id}} BIGINT, {{hired_on}} DATE, \
             FOREIGN KEY ({{manager_id}}) REFERENCES {{employee}} ({{employee_id}}))"
        ),
        format!("CREATE TABLE {{category}} ({{category_id}} {id}, {{name}} {text} NOT NULL)"),
        format!(
            "CREATE TABLE {{supplier}} ({{supplier_id}} {id}, {{company_name}} {text} NOT NULL, {{city}} {text})"
        ),
        format!(
            "CREATE TABLE {{product}} ({{product_id}} {id}, {{category_id}} BIGINT NOT NULL, \
             {{name}} {text} NOT NULL, {{unit_price}} NUMERIC(10, 2) NOT NULL, {{description}} {text}, \
             FOREIGN KEY ({{category_id}}) REFERENCES {{category}} ({{category_id}}))"
        ),
        "CREATE TABLE {product_supplier} ({product_id} BIGINT NOT NULL, {supplier_id} BIGINT NOT NULL, \
         {lead_days} INT, PRIMARY KEY ({product_id}, {supplier_id}), \
         FOREIGN KEY ({product_id}) REFERENCES {product} ({product_id}), \
         FOREIGN KEY ({supplier_id}) REFERENCES {supplier} ({supplier_id}))"
            .to_owned(),
        format!(
            "CREATE TABLE {{sales_order}} ({{sales_order_id}} {id}, {{customer_id}} BIGINT NOT NULL, \
             {{employee_id}} BIGINT, {{ordered_on}} DATE NOT NULL, {{shipped_at}} {stamp}, {{note}} {text}, \
             FOREIGN KEY ({{customer_id}}) REFERENCES {{customer}} ({{customer_id}}), \
             FOREIGN KEY ({{employee_id}}) REFERENCES {{employee}} ({{employee_id}}))"
        ),
        format!(
            "CREATE TABLE {{order_line}} ({{order_line_id}} {id}, {{sales_order_id}} BIGINT NOT NULL, \
             {{product_id}} BIGINT NOT NULL, {{quantity}} INT NOT NULL, {{unit_price}} NUMERIC(10, 2) NOT NULL, \
             {{discount}} NUMERIC(4, 3) NOT NULL DEFAULT 0, \
             FOREIGN KEY ({{sales_order_id}}) REFERENCES {{sales_order}} ({{sales_order_id}}), \
             FOREIGN KEY ({{product_id}}) REFERENCES {{product}} ({{product_id}}))"
        ),
        format!(
            "CREATE TABLE {{payment}} ({{payment_id}} {id}, {{sales_order_id}} BIGINT NOT NULL, \
             {{amount}} NUMERIC(12, 2) NOT NULL, {{paid_on}} DATE NOT NULL, {{method}} {short}, \
             FOREIGN KEY ({{sales_order_id}}) REFERENCES {{sales_order}} ({{sales_order_id}}))"
        ),
    ];
    for statement in statements {
        db.exec(&sql(db, &statement)).await;
    }
}

/// Names that are not ASCII, for customers and products.
const NAMES: [&str; 6] = [
    "Zoë Ångström",
    "Łukasz Żółć",
    "李雷",
    "Renée Müller",
    "Ólafur Þór",
    "Ana Núñez",
];

/// The id of the row of `table` whose `column` (snake) is `value`.
fn id_of(db: &Db, table: &str, column: &str, value: &str) -> String {
    sql(
        db,
        &format!(
            "(SELECT {{{table}_id}} FROM {{{table}}} WHERE {{{column}}} = '{}')",
            value.replace('\'', "''")
        ),
    )
}

/// Fills `db` with a business of its own: every name starts with `tag`,
/// so that two sides seeded with different tags hold different records
/// (and their ids point at different things). `scale` sets how many.
pub async fn seed(db: &Db, tag: &str, scale: usize) {
    for i in 0..scale * 4 {
        let name = format!("{tag} {} {i}", NAMES[i % NAMES.len()]);
        db.exec(&sql(
            db,
            &format!(
                "INSERT INTO {{customer}} ({{name}}, {{email}}, {{country}}, {{credit_limit}}, {{created_on}}) \
                 VALUES ('{name}', '{}.{i}@example.com', '{}', {}.50, '2026-0{}-1{}')",
                tag.to_lowercase(),
                ["FR", "DE", "PL", "CN"][i % 4],
                1000 + i * 10,
                1 + i % 9,
                i % 10
            ),
        ))
        .await;
    }
    // A hierarchy: each employee reports to the one before (read first:
    // MariaDB cannot read the table an INSERT writes).
    for i in 0..scale {
        let manager = if i == 0 {
            "NULL".to_owned()
        } else {
            let query = format!(
                "SELECT {{employee_id}} FROM {{employee}} WHERE {{full_name}} = '{tag} staff {}'",
                i - 1
            );
            db.value(&sql(db, &query))
                .await
                .expect("the manager exists")
        };
        db.exec(&sql(
            db,
            &format!(
                "INSERT INTO {{employee}} ({{full_name}}, {{manager_id}}, {{hired_on}}) \
                 VALUES ('{tag} staff {i}', {manager}, '2020-01-0{}')",
                1 + i % 9
            ),
        ))
        .await;
    }
    for i in 0..scale.max(2) {
        db.exec(&sql(
            db,
            &format!("INSERT INTO {{category}} ({{name}}) VALUES ('{tag} category {i}')"),
        ))
        .await;
        db.exec(&sql(
            db,
            &format!(
                "INSERT INTO {{supplier}} ({{company_name}}, {{city}}) VALUES ('{tag} supplier {i}', 'Kraków')"
            ),
        ))
        .await;
    }
    for i in 0..scale * 3 {
        let category = id_of(
            db,
            "category",
            "name",
            &format!("{tag} category {}", i % scale.max(2)),
        );
        db.exec(&sql(
            db,
            &format!(
                "INSERT INTO {{product}} ({{category_id}}, {{name}}, {{unit_price}}, {{description}}) \
                 VALUES ({category}, '{tag} product {i}', {}.25, 'Crème brûlée № {i} — «{}»')",
                3 + i,
                NAMES[i % NAMES.len()]
            ),
        ))
        .await;
        for s in 0..2 {
            let supplier = id_of(
                db,
                "supplier",
                "company_name",
                &format!("{tag} supplier {}", (i + s) % scale.max(2)),
            );
            let product = id_of(db, "product", "name", &format!("{tag} product {i}"));
            db.exec(&sql(
                db,
                &format!(
                    "INSERT INTO {{product_supplier}} ({{product_id}}, {{supplier_id}}, {{lead_days}}) \
                     VALUES ({product}, {supplier}, {})",
                    i + s
                ),
            ))
            .await;
        }
    }
    for i in 0..scale * 6 {
        add_order(db, tag, i, scale).await;
    }
}

/// One order of customer `i % customers` with three lines and a payment;
/// its note (`{tag} order {i}`) names it.
pub async fn add_order(db: &Db, tag: &str, i: usize, scale: usize) {
    let customer = id_of(
        db,
        "customer",
        "name",
        &format!(
            "{tag} {} {}",
            NAMES[i % (scale * 4) % NAMES.len()],
            i % (scale * 4)
        ),
    );
    let employee = if i.is_multiple_of(3) {
        "NULL".to_owned()
    } else {
        id_of(
            db,
            "employee",
            "full_name",
            &format!("{tag} staff {}", i % scale),
        )
    };
    db.exec(&sql(
        db,
        &format!(
            "INSERT INTO {{sales_order}} ({{customer_id}}, {{employee_id}}, {{ordered_on}}, {{shipped_at}}, {{note}}) \
             VALUES ({customer}, {employee}, '2026-03-0{}', NULL, '{tag} order {i}')",
            1 + i % 9
        ),
    ))
    .await;
    let order = id_of(db, "sales_order", "note", &format!("{tag} order {i}"));
    for line in 0..3 {
        let product = id_of(
            db,
            "product",
            "name",
            &format!("{tag} product {}", (i + line) % (scale * 3)),
        );
        db.exec(&sql(
            db,
            &format!(
                "INSERT INTO {{order_line}} ({{sales_order_id}}, {{product_id}}, {{quantity}}, {{unit_price}}, {{discount}}) \
                 VALUES ({order}, {product}, {}, {}.99, 0.{:03})",
                1 + line,
                2 + i,
                (i * 7 + line) % 200
            ),
        ))
        .await;
    }
    db.exec(&sql(
        db,
        &format!(
            "INSERT INTO {{payment}} ({{sales_order_id}}, {{amount}}, {{paid_on}}, {{method}}) \
             VALUES ({order}, {}.00, '2026-04-0{}', 'card')",
            10 + i,
            1 + i % 9
        ),
    ))
    .await;
}

/// A decimal or integer as the same text on every engine (SQLite keeps
/// `12.50` as the number 12.5).
fn canonical(value: Option<String>) -> String {
    match value {
        None => "NULL".to_owned(),
        Some(text) => match text.parse::<f64>() {
            Ok(number) if text.contains('.') || text.parse::<i64>().is_ok() => {
                format!("{number:.3}")
            }
            _ => text,
        },
    }
}

/// What the data says, table by table, with references read as what they
/// point to; sorted, so that two sides can be compared whatever their ids.
pub async fn facts(db: &Db) -> BTreeMap<&'static str, Vec<String>> {
    let queries: [(&str, &str); 9] = [
        (
            "customer",
            "SELECT {name}, {email}, {country}, {credit_limit}, {created_on} FROM {customer}",
        ),
        (
            "employee",
            "SELECT e.{full_name}, m.{full_name}, e.{hired_on} FROM {employee} e \
             LEFT JOIN {employee} m ON m.{employee_id} = e.{manager_id}",
        ),
        ("category", "SELECT {name} FROM {category}"),
        ("supplier", "SELECT {company_name}, {city} FROM {supplier}"),
        (
            "product",
            "SELECT p.{name}, c.{name}, p.{unit_price}, p.{description} FROM {product} p \
             JOIN {category} c ON c.{category_id} = p.{category_id}",
        ),
        (
            "product_supplier",
            "SELECT p.{name}, s.{company_name}, ps.{lead_days} FROM {product_supplier} ps \
             JOIN {product} p ON p.{product_id} = ps.{product_id} \
             JOIN {supplier} s ON s.{supplier_id} = ps.{supplier_id}",
        ),
        (
            "sales_order",
            "SELECT o.{note}, c.{name}, e.{full_name}, o.{ordered_on} FROM {sales_order} o \
             JOIN {customer} c ON c.{customer_id} = o.{customer_id} \
             LEFT JOIN {employee} e ON e.{employee_id} = o.{employee_id}",
        ),
        (
            "order_line",
            "SELECT o.{note}, p.{name}, l.{quantity}, l.{unit_price}, l.{discount} FROM {order_line} l \
             JOIN {sales_order} o ON o.{sales_order_id} = l.{sales_order_id} \
             JOIN {product} p ON p.{product_id} = l.{product_id}",
        ),
        (
            "payment",
            "SELECT o.{note}, y.{amount}, y.{paid_on}, y.{method} FROM {payment} y \
             JOIN {sales_order} o ON o.{sales_order_id} = y.{sales_order_id}",
        ),
    ];
    let mut facts = BTreeMap::new();
    for (table, query) in queries {
        let mut rows: Vec<String> = db
            .rows(&sql(db, query))
            .await
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(canonical)
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .collect();
        rows.sort();
        facts.insert(table, rows);
    }
    facts
}

/// Rows of `table` (snake name).
pub async fn count(db: &Db, table: &str) -> i64 {
    db.count(&sql(db, &format!("SELECT count(*) FROM {{{table}}}")))
        .await
}
