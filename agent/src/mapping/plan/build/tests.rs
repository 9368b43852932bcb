//! Planning, tested on described tables without a database.

use super::*;
use crate::mapping::plan::{DirectionMap, KeyMode, Mapped};
use crate::mapping::LookupCache;
use crate::mapping::RuleConfig;
use crate::state::State;
use tandem_connectors::{DataType, Key, Row, Value};

fn column(name: &str, generated: bool, nullable: bool) -> Column {
    let mut column = Column::new(name, DataType::Int, "bigint");
    column.nullable = nullable;
    column.generated = generated;
    column
}

fn table(name: &str, columns: Vec<Column>, key: &[&str], fks: Vec<(&str, &str)>) -> TableSchema {
    TableSchema {
        name: TableName::new(None, name),
        columns,
        primary_key: key.iter().map(|k| k.to_string()).collect(),
        foreign_keys: fks
            .into_iter()
            .map(|(c, t)| ForeignKey {
                columns: vec![c.into()],
                referenced_table: TableName::new(None, t),
                referenced_columns: vec!["id".into()],
            })
            .collect(),
    }
}

fn pair(name: &str) -> TablePairConfig {
    TablePairConfig {
        name: name.into(),
        source: name.into(),
        target: Some(name.into()),
        match_on: Vec::new(),
        directions: Default::default(),
        splits: Vec::new(),
    }
}

fn build(configs: &[TablePairConfig], tables: Vec<[TableSchema; 2]>) -> (Plan, Vec<PlanProblem>) {
    Plan::build(
        configs,
        tables.into_iter().map(Some).collect(),
        &LookupTables::new(),
        NameMatching::Fold,
    )
}

fn map(plan: &Plan, pair: usize, origin: Side, row: &Row, state: &State) -> Mapped {
    plan.map_row(PairId(pair), origin, row, state, &LookupCache::default())
        .unwrap()
}

fn written(direction: &DirectionMap) -> Vec<&str> {
    direction.columns.iter().map(|c| c.to.as_str()).collect()
}

#[test]
fn parents_come_first_and_links_translate() {
    let orders = table(
        "orders",
        vec![
            column("id", true, false),
            column("customer_id", false, false),
            column("qty", false, true),
        ],
        &["id"],
        vec![("customer_id", "customers")],
    );
    let customers = table(
        "customers",
        vec![column("id", true, false), column("name", false, true)],
        &["id"],
        vec![],
    );
    let (plan, problems) = build(
        &[pair("orders"), pair("customers")],
        vec![[orders.clone(), orders], [customers.clone(), customers]],
    );
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        plan.pairs
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["customers", "orders"]
    );
    let orders = &plan.pairs[1].directions[0];
    assert_eq!(orders.key_mode, KeyMode::Generated);
    assert_eq!(written(orders), ["qty"]);
    assert_eq!(orders.relations[0].pair, PairId(0));

    let state = State::in_memory();
    let row: Row = [
        ("id".into(), Value::Int(5)),
        ("customer_id".into(), Value::Int(7)),
        ("qty".into(), Value::Int(2)),
    ]
    .into();
    assert!(matches!(
        map(&plan, 1, Side::Source, &row, &state),
        Mapped::Waiting { .. }
    ));
    let mut batch = crate::state::StateBatch::default();
    batch.put_link(
        "customers",
        &crate::state::Link::new(Key(vec![Value::Int(7)]), Key(vec![Value::Int(70)])),
    );
    state.commit(batch, false).unwrap();
    let Mapped::Complete(mapped) = map(&plan, 1, Side::Source, &row, &state) else {
        panic!("expected a complete row")
    };
    assert_eq!(mapped.get("customer_id"), Some(&Value::Int(70)));
    assert!(!mapped.contains_key("id"), "generated keys are not copied");
}

#[test]
fn self_references_are_deferred_and_link_tables_use_references() {
    let employees = table(
        "employees",
        vec![column("id", true, false), column("manager_id", false, true)],
        &["id"],
        vec![("manager_id", "employees")],
    );
    let link = table(
        "post_tags",
        vec![
            column("post_id", false, false),
            column("tag_id", false, false),
        ],
        &["post_id", "tag_id"],
        vec![("post_id", "employees"), ("tag_id", "employees")],
    );
    let (plan, _) = build(
        &[pair("employees"), pair("post_tags")],
        vec![[employees.clone(), employees], [link.clone(), link]],
    );
    assert!(plan.pairs[0].directions[1].relations[0].deferrable);
    assert_eq!(plan.pairs[1].directions[0].key_mode, KeyMode::References);
    let row: Row = [
        ("id".into(), Value::Int(2)),
        ("manager_id".into(), Value::Int(1)),
    ]
    .into();
    assert!(matches!(
        plan.map_row(
            PairId(0),
            Side::Target,
            &row,
            &State::in_memory(),
            &LookupCache::default()
        )
        .unwrap(),
        Mapped::Partial(_)
    ));
}

#[test]
fn only_references_to_the_whole_primary_key_are_translated() {
    let customers = table(
        "customers",
        vec![column("id", true, false), column("number", false, false)],
        &["id"],
        vec![],
    );
    let mut orders = table(
        "orders",
        vec![
            column("id", true, false),
            column("customer_number", false, false),
        ],
        &["id"],
        vec![],
    );
    orders.foreign_keys.push(ForeignKey {
        columns: vec!["customer_number".into()],
        referenced_table: TableName::new(None, "customers"),
        referenced_columns: vec!["number".into()],
    });
    let (plan, problems) = build(
        &[pair("customers"), pair("orders")],
        vec![[customers.clone(), customers], [orders.clone(), orders]],
    );
    assert!(plan.pairs[1].directions[0].relations.is_empty());
    assert!(written(&plan.pairs[1].directions[0]).contains(&"customer_number"));
    assert!(
        problems
            .iter()
            .any(|p| !p.fatal && p.message.contains("not the primary key of customers")),
        "{problems:?}"
    );
}

#[test]
fn an_expression_of_the_wrong_kind_is_refused_at_start_up() {
    let source = table(
        "items",
        vec![column("id", true, false), column("qty", false, true)],
        &["id"],
        vec![],
    );
    let mut target = table("items", vec![column("id", true, false)], &["id"], vec![]);
    target
        .columns
        .push(Column::new("seen", DataType::Date, "date"));
    target.columns.push(column("double_qty", false, true));
    let mut config = pair("items");
    config.directions[0].columns = vec![
        ("seen".into(), RuleConfig::Expression("qty > 1".into())),
        (
            "double_qty".into(),
            RuleConfig::Expression("qty * 2".into()),
        ),
    ];
    let (_, problems) = build(&[config], vec![[source, target]]);
    let fatal: Vec<_> = problems
        .iter()
        .filter(|p| p.fatal && p.message.contains("source -> target"))
        .map(|p| p.message.as_str())
        .collect();
    assert_eq!(
        fatal,
        ["pair items: source -> target: column seen: expression \"qty > 1\" gives bool, which does not fit its type date"]
    );
}

#[test]
fn a_not_null_column_no_direction_fills_is_an_error() {
    let source = table("items", vec![column("id", true, false)], &["id"], vec![]);
    let target = table(
        "items",
        vec![column("id", true, false), column("required", false, false)],
        &["id"],
        vec![],
    );
    let (_, problems) = build(&[pair("items")], vec![[source, target]]);
    let warning = problems
        .iter()
        .find(|p| {
            p.message
                .contains("column required is NOT NULL in target table items")
        })
        .expect("a problem");
    assert!(warning.fatal, "new copies would fail: {warning:?}");
    assert!(
        warning.message.starts_with("pair items: source -> target:"),
        "{}",
        warning.message
    );
}

#[test]
fn a_table_without_key_is_fatal() {
    let t = table("log", vec![column("msg", false, true)], &[], vec![]);
    let (_, problems) = build(&[pair("log")], vec![[t.clone(), t]]);
    assert!(
        problems
            .iter()
            .any(|p| p.fatal && p.message.contains("log has no primary key")),
        "{problems:?}"
    );
}

/// A table of nullable integer columns keyed by a generated `key`,
/// with foreign keys `(column, table)` to tables keyed by `id`.
fn keyed(name: &str, key: &str, others: &[&str], fks: Vec<(&str, &str)>) -> TableSchema {
    let mut columns = vec![column(key, true, false)];
    columns.extend(others.iter().map(|c| column(c, false, true)));
    let mut table = table(name, columns, &[key], fks);
    for fk in &mut table.foreign_keys {
        fk.referenced_columns = vec![if name.chars().next().is_some_and(char::is_uppercase) {
            "Id".into()
        } else {
            "id".into()
        }];
    }
    table
}

fn pair_of(name: &str, source: &str, target: &str) -> TablePairConfig {
    TablePairConfig {
        source: source.into(),
        target: Some(target.into()),
        ..pair(name)
    }
}

fn rule(to: &str, from: &str, translate: bool) -> (String, RuleConfig) {
    (
        to.into(),
        RuleConfig::Column {
            from: from.into(),
            translate,
        },
    )
}

/// customers / Customer and orders / Orders, the order's reference to
/// its customer renamed (customer_id / CustomerRef), declared on the
/// source only.
fn renamed_reference() -> (Vec<TablePairConfig>, Vec<[TableSchema; 2]>) {
    let customers = keyed("customers", "id", &["full_name"], vec![]);
    let customer = keyed("Customer", "Id", &["FullName"], vec![]);
    let orders = keyed(
        "orders",
        "id",
        &["customer_id", "order_date"],
        vec![("customer_id", "customers")],
    );
    let target_orders = keyed("Orders", "Id", &["CustomerRef", "OrderDate"], vec![]);
    let mut orders_pair = pair_of("orders", "orders", "Orders");
    orders_pair.directions[0].columns = vec![rule("CustomerRef", "customer_id", true)];
    orders_pair.directions[1].columns = vec![rule("customer_id", "CustomerRef", true)];
    (
        vec![pair_of("customers", "customers", "Customer"), orders_pair],
        vec![[customers, customer], [orders, target_orders]],
    )
}

#[test]
fn a_renamed_reference_is_translated_both_ways_and_check_is_silent() {
    let (configs, tables) = renamed_reference();
    let (plan, problems) = build(&configs, tables);
    assert!(problems.is_empty(), "{problems:?}");
    let orders = &plan.pairs[1];
    assert_eq!(orders.name, "orders");
    let to_target = &orders.directions[0];
    assert_eq!(written(to_target), ["OrderDate"]);
    assert_eq!(to_target.relations[0].from, ["customer_id"]);
    assert_eq!(to_target.relations[0].to, ["CustomerRef"]);
    assert_eq!(to_target.relations[0].pair, PairId(0));
    let to_source = &orders.directions[1];
    assert_eq!(to_source.relations[0].from, ["CustomerRef"]);
    assert_eq!(to_source.relations[0].to, ["customer_id"]);
    assert_eq!(written(to_source), ["order_date"]);

    let state = State::in_memory();
    let mut batch = crate::state::StateBatch::default();
    batch.put_link(
        "customers",
        &crate::state::Link::new(Key(vec![Value::Int(7)]), Key(vec![Value::Int(70)])),
    );
    state.commit(batch, false).unwrap();
    let row: Row = [
        ("id".into(), Value::Int(1)),
        ("customer_id".into(), Value::Int(7)),
    ]
    .into();
    let (Mapped::Complete(mapped) | Mapped::Partial(mapped)) =
        map(&plan, 1, Side::Source, &row, &state)
    else {
        panic!("the customer is linked")
    };
    assert_eq!(mapped.get("CustomerRef"), Some(&Value::Int(70)));
}

#[test]
fn translate_false_copies_a_reference_as_it_is_and_says_so() {
    let (mut configs, tables) = renamed_reference();
    configs[1].directions[0].columns = vec![rule("CustomerRef", "customer_id", false)];
    let (plan, problems) = build(&configs, tables);
    let to_target = &plan.pairs[1].directions[0];
    assert!(to_target.relations.is_empty());
    let copied = to_target
        .columns
        .iter()
        .find(|c| c.to == "CustomerRef")
        .unwrap();
    assert_eq!(copied.untranslated.as_deref(), Some("customers"));
    assert!(
        problems.iter().any(|p| !p.fatal
            && p.message.starts_with("pair orders: source -> target: column CustomerRef copies customer_id untranslated (translate = false)")),
        "{problems:?}"
    );
    // Where no reference is involved, it is said to change nothing.
    configs[0].directions[0].columns = vec![rule("FullName", "full_name", false)];
    let (_, problems) = build(&configs, renamed_reference().1);
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("translate = false has no effect")),
        "{problems:?}"
    );
}

#[test]
fn names_in_other_styles_match_and_unmatched_ones_are_listed() {
    let source = keyed(
        "order_line",
        "order_line_id",
        &["unit_price", "qty", "note"],
        vec![],
    );
    let target = keyed(
        "OrderLine",
        "OrderLineId",
        &["UnitPrice", "Quantity", "Note"],
        vec![],
    );
    let (plan, problems) = build(
        &[pair_of("order_line", "order_line", "OrderLine")],
        vec![[source, target]],
    );
    assert_eq!(written(&plan.pairs[0].directions[0]), ["UnitPrice", "Note"]);
    assert_eq!(
        written(&plan.pairs[0].directions[1]),
        ["unit_price", "note"]
    );
    assert_eq!(
        problems,
        [PlanProblem::warning(
            "pair order_line: not synced: source column qty; target column Quantity \
             (perhaps `Quantity = \"qty\"` under [tables.to_target.columns] and the reverse under to_source; \
             or list them in exclude)"
        )]
    );
    // Names as written only, when asked.
    let source = keyed("t", "id", &["unit_price"], vec![]);
    let target = keyed("T", "Id", &["UnitPrice"], vec![]);
    let (plan, _) = Plan::build(
        &[pair_of("t", "t", "T")],
        vec![Some([source, target])],
        &LookupTables::new(),
        NameMatching::Exact,
    );
    assert!(written(&plan.pairs[0].directions[0]).is_empty());
}

#[test]
fn ambiguous_names_unknown_names_and_empty_mappings_are_errors() {
    let source = keyed("items", "id", &["order_id", "OrderId", "qty"], vec![]);
    let target = keyed("Items", "Id", &["ORDERID", "Quantity"], vec![]);
    let mut config = pair_of("items", "items", "Items");
    config.directions[0].columns = vec![rule("Quantty", "qty", true)];
    let (_, problems) = build(&[config], vec![[source, target]]);
    let errors: Vec<&str> = problems
        .iter()
        .filter(|p| p.fatal)
        .map(|p| p.message.as_str())
        .collect();
    for expected in [
        "pair items: source -> target: column Quantty: no such column in target table Items (did you mean `Quantity`?)",
        "pair items: source -> target: column ORDERID: source columns order_id and OrderId all match it: map one (`ORDERID = \"order_id\"`)",
        "pair items: target -> source: no column of source table items gets a value",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{expected:?} not in {errors:#?}"
        );
    }
}

#[test]
fn values_a_column_cannot_hold_are_warned_about() {
    let mut source = keyed("items", "id", &[], vec![]);
    let mut target = keyed("Items", "Id", &[], vec![]);
    let mut long = Column::new("label", DataType::Text, "varchar");
    long.capacity.max_chars = Some(100);
    let mut short = Column::new("Label", DataType::Text, "varchar");
    short.capacity.max_chars = Some(50);
    source.columns.push(long);
    target.columns.push(short);
    let (_, problems) = build(
        &[pair_of("items", "items", "Items")],
        vec![[source, target]],
    );
    assert_eq!(
        problems,
        [PlanProblem::warning(
            "pair items: source -> target: column Label: source column label holds up to 100 characters, \
             Label 50: longer values are dead-lettered; widen Label to 100"
        )]
    );
}

#[test]
fn a_reference_copied_into_two_columns_is_translated_in_both() {
    let (mut configs, mut tables) = renamed_reference();
    tables[1][1]
        .columns
        .push(column("LegacyCustomer", false, true));
    configs[1].directions[0]
        .columns
        .push(rule("LegacyCustomer", "customer_id", true));
    let (plan, problems) = build(&configs, tables);
    let to_target = &plan.pairs[1].directions[0];
    let mut related: Vec<&str> = to_target
        .relations
        .iter()
        .map(|r| r.to[0].as_str())
        .collect();
    related.sort();
    assert_eq!(related, ["CustomerRef", "LegacyCustomer"], "{problems:?}");
    assert_eq!(written(to_target), ["OrderDate"]);
}

#[test]
fn a_reference_between_keys_of_other_types_is_still_a_reference() {
    // The target's customers are keyed by UUIDs: the reference is
    // translated through the links, whatever the types.
    let (configs, mut tables) = renamed_reference();
    for (i, name) in [(0, "Id"), (1, "CustomerRef")] {
        let column = tables[i][1]
            .columns
            .iter_mut()
            .find(|c| c.name == name)
            .unwrap();
        column.data_type = DataType::Uuid;
        column.native_type = "uuid".into();
    }
    let mut configs = configs;
    configs[1].directions = Default::default();
    tables[1][1]
        .foreign_keys
        .push(tandem_connectors::ForeignKey {
            columns: vec!["CustomerRef".into()],
            referenced_table: TableName::new(None, "Customer"),
            referenced_columns: vec!["Id".into()],
        });
    // Named alike on both sides this time.
    tables[1][0].columns[1].name = "customer_ref".into();
    tables[1][0].foreign_keys[0].columns = vec!["customer_ref".into()];
    let (plan, problems) = build(&configs, tables);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(plan.pairs[1].directions[0].relations[0].to, ["CustomerRef"]);
    assert_eq!(
        plan.pairs[1].directions[1].relations[0].to,
        ["customer_ref"]
    );
}

#[test]
fn a_reference_computed_by_an_expression_is_named() {
    let (mut configs, tables) = renamed_reference();
    configs[1].directions[0].columns = vec![(
        "CustomerRef".into(),
        RuleConfig::Expression("customer_id + 0".into()),
    )];
    let (plan, problems) = build(&configs, tables);
    assert!(plan.pairs[1].directions[0].relations.is_empty());
    assert!(
        problems.iter().any(|p| !p.fatal
            && p.message.contains(
                "the expression reads customer_id, a reference to pair customers's table"
            )),
        "{problems:?}"
    );
}

#[test]
fn two_rules_for_one_column_and_half_a_translated_key_are_errors() {
    let (mut configs, tables) = renamed_reference();
    configs[1].directions[0].columns = vec![
        rule("CustomerRef", "customer_id", true),
        rule("customer_ref", "customer_id", true),
    ];
    let (_, problems) = build(&configs, tables);
    assert!(
        problems.iter().any(|p| p.fatal
            && p.message.contains(
                "columns CustomerRef and customer_ref both name target column CustomerRef"
            )),
        "{problems:?}"
    );

    let parent = table(
        "parent",
        vec![column("a", false, false), column("b", false, false)],
        &["a", "b"],
        vec![],
    );
    let mut child = keyed("child", "id", &["pa", "pb"], vec![]);
    child.foreign_keys.push(tandem_connectors::ForeignKey {
        columns: vec!["pa".into(), "pb".into()],
        referenced_table: TableName::new(None, "parent"),
        referenced_columns: vec!["a".into(), "b".into()],
    });
    let mut config = pair("child");
    config.directions[0].columns = vec![rule("pa", "pa", false)];
    let (_, problems) = build(
        &[pair("parent"), config],
        vec![[parent.clone(), parent], [child.clone(), child]],
    );
    assert!(
        problems.iter().any(|p| p.fatal
            && p.message.contains(
                "column pa says translate = false, the other columns of foreign key (pa, pb)"
            )),
        "{problems:?}"
    );
}

#[test]
fn columns_the_database_fills_are_not_called_unsynced() {
    let mut source = keyed("items", "id", &["qty"], vec![]);
    let mut target = keyed("Items", "Id", &["Qty"], vec![]);
    let mut total = column("total", true, true);
    total.always_generated = true;
    source.columns.push(total);
    let mut other = column("Total2", true, true);
    other.always_generated = true;
    target.columns.push(other);
    let (_, problems) = build(
        &[pair_of("items", "items", "Items")],
        vec![[source, target]],
    );
    assert!(problems.is_empty(), "{problems:?}");
}
