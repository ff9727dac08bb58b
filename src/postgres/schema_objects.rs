//! The object kinds the schema fingerprint added in its version 2: everything else pg_dump's
//! schema output holds besides tables, columns, constraints, views, functions, triggers, types
//! and policies (version 1, in [`super::fingerprint`]).
//!
//! Each query returns `(key, definition)` rows. Keys are the server's own names for objects
//! (`pg_describe_object`: `rule r on table public.t`, `operator public.===(integer,integer)`,
//! `column x of table public.t`), so a difference reads as a sentence; definitions are built
//! from deparsers and `regproc`/`regtype` names, never OIDs. User objects are those with an OID
//! past the bootstrap range (`FirstNormalObjectId`) that no extension owns.
//!
//! Owners (`owner of ...`) and privileges (`privileges on ...`, `default privileges ...`) are
//! recorded too, but compared only when the restore applied them: see [`OWNER_PREFIX`].

/// Keys of owner entries; compared only when owners were restored (`--keep-owner`).
pub const OWNER_PREFIX: &str = "owner of ";
/// Keys of privilege entries; compared only when privileges were restored.
pub const PRIVILEGE_PREFIXES: [&str; 2] = ["privileges on ", "default privileges "];

/// Objects created by users (initdb's objects have smaller OIDs).
const FIRST_USER_OID: u32 = 16384;

/// The one object initdb makes that users commonly change and pg_dump then dumps (its owner,
/// privileges and comment): the `public` schema.
const PUBLIC_SCHEMA_OID: u32 = 2200;

/// Not created by an extension's script (the extension recreates those).
fn not_extension_member(classid: &str, objid: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend dep WHERE dep.classid = {classid} \
         AND dep.objid = {objid} AND dep.deptype = 'e')"
    )
}

fn catalog(name: &str) -> String {
    format!("'pg_catalog.{name}'::pg_catalog.regclass")
}

/// `(key, definition)` of every user object in catalog `name` (aliased `x`).
fn objects_of(name: &str, key_prefix: &str, definition: &str, filter: &str) -> String {
    let class = catalog(name);
    let namespace = catalog("pg_namespace");
    format!(
        "SELECT {key_prefix}pg_catalog.pg_describe_object({class}, x.oid, 0), {definition} \
         FROM pg_catalog.{name} x WHERE (x.oid >= {FIRST_USER_OID} OR {class} = {namespace} \
         AND x.oid = {PUBLIC_SCHEMA_OID}) AND {} AND ({filter})",
        not_extension_member(&class, "x.oid")
    )
}

/// A privilege list as text, independent of who owns the object (a restore without
/// `--keep-owner` changes the owner, and the owner's own grant goes with it) and of whether
/// the list is stored or implied (`NULL` means the default); `NULL` when it is the default.
/// `default_kind` is an SQL expression for `acldefault`'s object type.
fn privileges(acl: &str, default_kind: &str, owner: &str) -> String {
    let listed = |list: &str| {
        format!(
            "(SELECT pg_catalog.string_agg(concat_ws(' ', \
               CASE a.grantee WHEN 0 THEN 'PUBLIC' WHEN {owner} THEN 'owner' \
                    ELSE pg_catalog.pg_get_userbyid(a.grantee) END, a.privilege_type, \
               CASE WHEN a.is_grantable THEN 'with grant option' END, 'by', \
               CASE a.grantor WHEN {owner} THEN 'owner' \
                    ELSE pg_catalog.pg_get_userbyid(a.grantor) END), ', ' ORDER BY 1) \
             FROM pg_catalog.aclexplode({list}) a)"
        )
    };
    let default = format!("pg_catalog.acldefault(({default_kind})::\"char\", {owner})");
    format!(
        "NULLIF({}, {})",
        listed(&format!("coalesce({acl}, {default})")),
        listed(&default)
    )
}

/// Each query returns `(key, definition)` rows; rows with a `NULL` definition are left out.
/// Option lists are compared sorted: their order means nothing, and a restore may change it.
pub fn queries(user_namespace: &str) -> Vec<(&'static str, String)> {
    let rel_not_ext = not_extension_member(&catalog("pg_class"), "c.oid");
    let relation = format!(
        "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relpersistence <> 't' AND {user_namespace} AND {rel_not_ext}"
    );
    let describe_rel =
        "pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, c.oid, 0)";
    vec![
        (
            "rules",
            format!(
                "SELECT pg_catalog.pg_describe_object({}, r.oid, 0),
                        pg_catalog.pg_get_ruledef(r.oid) || ' enabled ' || r.ev_enabled::text
                 FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE r.rulename <> '_RETURN' AND {user_namespace} AND {rel_not_ext}",
                catalog("pg_rewrite")
            ),
        ),
        (
            "operators",
            objects_of(
                "pg_operator",
                "",
                "concat_ws(' ', x.oprcode::pg_catalog.regprocedure, x.oprresult::pg_catalog.regtype,
                   'commutator ' || NULLIF(x.oprcom, 0)::pg_catalog.regoperator,
                   'negator ' || NULLIF(x.oprnegate, 0)::pg_catalog.regoperator,
                   'restrict ' || NULLIF(x.oprrest::oid, 0)::pg_catalog.regprocedure,
                   'join ' || NULLIF(x.oprjoin::oid, 0)::pg_catalog.regprocedure,
                   'merges ' || x.oprcanmerge, 'hashes ' || x.oprcanhash)",
                "true",
            ),
        ),
        (
            "operator families",
            objects_of(
                "pg_opfamily",
                "",
                "concat_ws(E'\\n',
                   (SELECT pg_catalog.string_agg(concat_ws(' ', 'operator', o.amopstrategy,
                             o.amopopr::pg_catalog.regoperator, o.amoppurpose::text,
                             'order by ' || pg_catalog.pg_describe_object(
                                 'pg_catalog.pg_opfamily'::pg_catalog.regclass, NULLIF(o.amopsortfamily, 0), 0)),
                           E'\\n' ORDER BY 1)
                    FROM pg_catalog.pg_amop o WHERE o.amopfamily = x.oid),
                   (SELECT pg_catalog.string_agg(concat_ws(' ', 'function', p.amprocnum,
                             p.amproclefttype::pg_catalog.regtype, p.amprocrighttype::pg_catalog.regtype,
                             p.amproc::oid::pg_catalog.regprocedure), E'\\n' ORDER BY 1)
                    FROM pg_catalog.pg_amproc p WHERE p.amprocfamily = x.oid))",
                "true",
            ),
        ),
        (
            "operator classes",
            objects_of(
                "pg_opclass",
                "",
                "concat_ws(' ', 'for', x.opcintype::pg_catalog.regtype, 'default ' || x.opcdefault,
                   'family ' || pg_catalog.pg_describe_object('pg_catalog.pg_opfamily'::pg_catalog.regclass, x.opcfamily, 0),
                   'storage ' || NULLIF(x.opckeytype, 0)::pg_catalog.regtype)",
                "true",
            ),
        ),
        (
            "statistics objects",
            objects_of(
                "pg_statistic_ext",
                "",
                "pg_catalog.pg_get_statisticsobjdef(x.oid) || ' target ' || x.stxstattarget",
                "true",
            ),
        ),
        (
            "publications",
            objects_of(
                "pg_publication",
                "",
                "concat_ws(E'\\n', (pg_catalog.to_jsonb(x) - 'oid' - 'pubname' - 'pubowner')::text,
                   (SELECT pg_catalog.string_agg(concat_ws(' ', 'table', pr.prrelid::pg_catalog.regclass,
                             'where ' || pg_catalog.pg_get_expr(pr.prqual, pr.prrelid),
                             'columns ' || pr.prattrs::text), E'\\n' ORDER BY 1)
                    FROM pg_catalog.pg_publication_rel pr WHERE pr.prpubid = x.oid),
                   (SELECT pg_catalog.string_agg('schema ' || pn.pnnspid::pg_catalog.regnamespace, E'\\n' ORDER BY 1)
                    FROM pg_catalog.pg_publication_namespace pn WHERE pn.pnpubid = x.oid))",
                "true",
            ),
        ),
        (
            "text search configurations",
            objects_of(
                "pg_ts_config",
                "",
                "concat_ws(E'\\n', pg_catalog.pg_describe_object(
                     'pg_catalog.pg_ts_parser'::pg_catalog.regclass, x.cfgparser, 0),
                   (SELECT pg_catalog.string_agg(m.maptokentype || ' ' || m.mapseqno || ' ' ||
                             m.mapdict::pg_catalog.regdictionary, E'\\n' ORDER BY m.maptokentype, m.mapseqno)
                    FROM pg_catalog.pg_ts_config_map m WHERE m.mapcfg = x.oid))",
                "true",
            ),
        ),
        (
            "text search dictionaries",
            objects_of(
                "pg_ts_dict",
                "",
                "concat_ws(' ', pg_catalog.pg_describe_object('pg_catalog.pg_ts_template'::pg_catalog.regclass,
                   x.dicttemplate, 0), x.dictinitoption)",
                "true",
            ),
        ),
        (
            "text search parsers",
            objects_of(
                "pg_ts_parser",
                "",
                "concat_ws(' ', x.prsstart, x.prstoken, x.prsend, x.prsheadline, x.prslextype)",
                "true",
            ),
        ),
        (
            "text search templates",
            objects_of(
                "pg_ts_template",
                "",
                "concat_ws(' ', x.tmplinit, x.tmpllexize)",
                "true",
            ),
        ),
        (
            "casts",
            objects_of(
                "pg_cast",
                "",
                "concat_ws(' ', NULLIF(x.castfunc, 0)::pg_catalog.regprocedure, x.castcontext::text,
                   x.castmethod::text)",
                "true",
            ),
        ),
        (
            "conversions",
            objects_of(
                "pg_conversion",
                "",
                "concat_ws(' ', pg_catalog.pg_encoding_to_char(x.conforencoding),
                   pg_catalog.pg_encoding_to_char(x.contoencoding), x.conproc::oid::pg_catalog.regprocedure,
                   'default ' || x.condefault)",
                "true",
            ),
        ),
        (
            "collations",
            objects_of(
                "pg_collation",
                "",
                // Every column but names and the library version, whatever the server version.
                "(pg_catalog.to_jsonb(x) - 'oid' - 'collname' - 'collnamespace' - 'collowner'
                   - 'collversion')::text",
                "true",
            ),
        ),
        (
            "event triggers",
            objects_of(
                "pg_event_trigger",
                "",
                "concat_ws(' ', x.evtevent, x.evtfoid::pg_catalog.regprocedure, 'enabled ' || x.evtenabled::text,
                   'tags ' || x.evttags::text)",
                "true",
            ),
        ),
        (
            "foreign-data wrappers",
            objects_of(
                "pg_foreign_data_wrapper",
                "",
                "concat_ws(' ', 'handler ' || NULLIF(x.fdwhandler, 0)::pg_catalog.regprocedure,
                   'validator ' || NULLIF(x.fdwvalidator, 0)::pg_catalog.regprocedure,
                   'options ' || (SELECT pg_catalog.array_agg(o ORDER BY o) FROM pg_catalog.unnest(x.fdwoptions) o)::text)",
                "true",
            ),
        ),
        (
            "foreign servers",
            objects_of(
                "pg_foreign_server",
                "",
                "concat_ws(' ', pg_catalog.pg_describe_object('pg_catalog.pg_foreign_data_wrapper'::pg_catalog.regclass,
                   x.srvfdw, 0), 'type ' || x.srvtype, 'version ' || x.srvversion,
                   'options ' || (SELECT pg_catalog.array_agg(o ORDER BY o) FROM pg_catalog.unnest(x.srvoptions) o)::text)",
                "true",
            ),
        ),
        (
            "user mappings",
            // Through the view: the catalog is readable only by superusers. The view shows the
            // options only to those who may see them (they may hold a password: only their
            // hash reaches the manifest).
            format!(
                "SELECT pg_catalog.pg_describe_object({class}, um.umid, 0),
                        coalesce((SELECT pg_catalog.array_agg(o ORDER BY o) FROM pg_catalog.unnest(um.umoptions) o)::text, '')
                 FROM pg_catalog.pg_user_mappings um
                 WHERE um.umid >= {FIRST_USER_OID} AND {}",
                not_extension_member(&catalog("pg_user_mapping"), "um.umid"),
                class = catalog("pg_user_mapping")
            ),
        ),
        (
            "languages",
            objects_of(
                "pg_language",
                "",
                "concat_ws(' ', 'trusted ' || x.lanpltrusted, x.lanplcallfoid::pg_catalog.regprocedure,
                   'inline ' || NULLIF(x.laninline, 0)::pg_catalog.regprocedure,
                   'validator ' || NULLIF(x.lanvalidator, 0)::pg_catalog.regprocedure)",
                "true",
            ),
        ),
        (
            "access methods",
            objects_of(
                "pg_am",
                "",
                "x.amtype::text || ' ' || x.amhandler::oid::pg_catalog.regprocedure",
                "true",
            ),
        ),
        (
            "transforms",
            objects_of(
                "pg_transform",
                "",
                "concat_ws(' ', 'from ' || NULLIF(x.trffromsql, 0)::pg_catalog.regprocedure,
                   'to ' || NULLIF(x.trftosql, 0)::pg_catalog.regprocedure)",
                "true",
            ),
        ),
        (
            "aggregates",
            objects_of(
                "pg_proc",
                "'details of ' || ",
                "(SELECT (pg_catalog.to_jsonb(ag) - 'aggfnoid' - 'aggtranstype' - 'aggmtranstype')::text
                   || ' ' || ag.aggtranstype::pg_catalog.regtype || ' '
                   || coalesce(NULLIF(ag.aggmtranstype, 0)::pg_catalog.regtype::text, '')
                 FROM pg_catalog.pg_aggregate ag WHERE ag.aggfnoid = x.oid)",
                "x.prokind = 'a'",
            ),
        ),
        (
            "base and range types",
            objects_of(
                "pg_type",
                "'details of ' || ",
                "CASE x.typtype WHEN 'r' THEN
                   (SELECT concat_ws(' ', r.rngsubtype::pg_catalog.regtype,
                      'collation ' || NULLIF(r.rngcollation, 0)::pg_catalog.regcollation,
                      'opclass ' || pg_catalog.pg_describe_object('pg_catalog.pg_opclass'::pg_catalog.regclass, r.rngsubopc, 0),
                      'canonical ' || NULLIF(r.rngcanonical::oid, 0)::pg_catalog.regprocedure,
                      'subdiff ' || NULLIF(r.rngsubdiff::oid, 0)::pg_catalog.regprocedure,
                      'multirange ' || r.rngmultitypid::pg_catalog.regtype)
                    FROM pg_catalog.pg_range r WHERE r.rngtypid = x.oid)
                 ELSE concat_ws(' ', x.typtype::text, x.typinput, x.typoutput, x.typreceive, x.typsend,
                   x.typmodin, x.typmodout, x.typanalyze, x.typsubscript, x.typlen, x.typbyval,
                   x.typalign::text, x.typstorage::text, x.typcategory::text, x.typispreferred,
                   x.typdelim::text, NULLIF(x.typelem, 0)::pg_catalog.regtype,
                   'collatable ' || (x.typcollation <> 0), 'default ' || x.typdefault) END",
                "x.typtype IN ('b', 'p', 'r') AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type el
                   WHERE el.typarray = x.oid)",
            ),
        ),
        (
            "policy roles",
            objects_of(
                "pg_policy",
                "'roles of ' || ",
                "(SELECT pg_catalog.string_agg(CASE r WHEN 0 THEN 'PUBLIC'
                         ELSE pg_catalog.pg_get_userbyid(r) END, ', ' ORDER BY 1)
                  FROM pg_catalog.unnest(x.polroles) r)",
                "true",
            ),
        ),
        (
            "relation settings",
            // One entry per setting that is not the default, so a difference names the setting.
            format!(
                "SELECT s.setting || ' of ' || {describe_rel}, s.value {relation}
                   AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND s.value IS NOT NULL",
                relation = relation.replacen(
                    "WHERE",
                    &format!("CROSS JOIN LATERAL (VALUES {RELATION_SETTINGS}) s(setting, value) WHERE"),
                    1
                )
            ),
        ),
        (
            "column settings",
            format!(
                "SELECT 'settings of ' || pg_catalog.pg_describe_object(
                          'pg_catalog.pg_class'::pg_catalog.regclass, c.oid, a.attnum),
                        NULLIF(concat_ws(' ',
                          'statistics ' || NULLIF(a.attstattarget, -1),
                          'storage ' || CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage::text END,
                          'compression ' || NULLIF(a.attcompression, '')::text,
                          -- Only options a user can set: pg_dump leaves out any a server
                          -- build records under a reserved pg_ name.
                          'options ' || (SELECT pg_catalog.array_agg(o ORDER BY o)
                                         FROM pg_catalog.unnest(a.attoptions) o
                                         WHERE o NOT LIKE 'pg\\_%')::text,
                          'foreign options ' || (SELECT pg_catalog.array_agg(o ORDER BY o) FROM pg_catalog.unnest(a.attfdwoptions) o)::text), '')
                 FROM pg_catalog.pg_attribute a
                 JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relpersistence <> 't'
                   AND c.relkind IN ('r', 'p', 'm', 'f', 'i', 'I', 'c')
                   AND {user_namespace} AND {rel_not_ext}"
            ),
        ),
        (
            "comments",
            format!(
                "SELECT 'comment on ' || pg_catalog.pg_describe_object(d.classoid, d.objoid, d.objsubid),
                        d.description
                 FROM pg_catalog.pg_description d
                 WHERE (d.objoid >= {FIRST_USER_OID} OR d.objoid = {PUBLIC_SCHEMA_OID}
                        AND d.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass)
                   AND d.classoid <> 'pg_catalog.pg_largeobject'::pg_catalog.regclass
                   AND {}
                   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                       WHERE d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass
                         AND c.oid = d.objoid AND NOT ({user_namespace} AND {rel_not_ext}))",
                not_extension_member("d.classoid", "d.objoid")
            ),
        ),
        (
            "security labels",
            format!(
                "SELECT 'security label of ' || pg_catalog.pg_describe_object(s.classoid, s.objoid, s.objsubid)
                        || ' for ' || s.provider, s.label
                 FROM pg_catalog.pg_seclabel s
                 WHERE s.objoid >= {FIRST_USER_OID}
                   AND s.classoid <> 'pg_catalog.pg_largeobject'::pg_catalog.regclass
                   AND {}",
                not_extension_member("s.classoid", "s.objoid")
            ),
        ),
        ("owners", owners()),
        ("privileges", acls(user_namespace, &rel_not_ext)),
    ]
}

/// The settings of a relation `c` that pg_dump writes besides its definition, each `NULL` when
/// it is the default.
const RELATION_SETTINGS: &str = "
    ('storage parameters', (SELECT pg_catalog.array_agg(o ORDER BY o) FROM pg_catalog.unnest(c.reloptions) o)::text),
    ('TOAST storage parameters', (SELECT (SELECT pg_catalog.array_agg(o ORDER BY o) FROM pg_catalog.unnest(t.reloptions) o)::text FROM pg_catalog.pg_class t
                                  WHERE t.oid = c.reltoastrelid)),
    ('clustered index', (SELECT i.relname::text FROM pg_catalog.pg_index x
                         JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
                         WHERE x.indrelid = c.oid AND x.indisclustered)),
    ('replica identity', CASE WHEN c.relreplident <> 'd' THEN concat_ws(' ', c.relreplident::text,
                           (SELECT i.relname FROM pg_catalog.pg_index x
                            JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
                            WHERE x.indrelid = c.oid AND x.indisreplident)) END),
    ('parents', (SELECT pg_catalog.string_agg(i.inhparent::pg_catalog.regclass::text, ', '
                                              ORDER BY i.inhseqno)
                 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid AND NOT c.relispartition)),
    ('access method', (SELECT am.amname::text FROM pg_catalog.pg_am am
                       WHERE am.oid = c.relam AND am.amname <> 'heap' AND am.amtype = 't')),
    ('tablespace', (SELECT ts.spcname::text FROM pg_catalog.pg_tablespace ts
                    WHERE ts.oid = c.reltablespace)),
    ('server and options', (SELECT concat_ws(' ', fs.srvname, (SELECT pg_catalog.array_agg(o ORDER BY o) FROM pg_catalog.unnest(ft.ftoptions) o)::text)
                            FROM pg_catalog.pg_foreign_table ft
                            JOIN pg_catalog.pg_foreign_server fs ON fs.oid = ft.ftserver
                            WHERE ft.ftrelid = c.oid)),
    ('owning column', (SELECT pg_catalog.pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
                       FROM pg_catalog.pg_depend d
                       WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                         AND d.objid = c.oid AND c.relkind = 'S' AND d.deptype IN ('a', 'i')
                         AND d.refobjsubid > 0)),
    ('type', NULLIF(c.reloftype, 0)::pg_catalog.regtype::text)";

/// Catalogs whose objects have an owner pg_dump sets: (catalog, owner column, which rows).
const OWNED: [(&str, &str, &str); 16] = [
    ("pg_class", "relowner", "x.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND x.relpersistence <> 't'"),
    ("pg_proc", "proowner", "true"),
    // Not array types or row types: their owner is their element's or relation's.
    ("pg_type", "typowner", "x.typrelid = 0 AND x.typtype <> 'm' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type el WHERE el.typarray = x.oid)"),
    ("pg_namespace", "nspowner", "x.nspname NOT LIKE 'pg\\_%'"),
    ("pg_operator", "oprowner", "true"),
    ("pg_opclass", "opcowner", "true"),
    ("pg_opfamily", "opfowner", "true"),
    ("pg_collation", "collowner", "true"),
    ("pg_conversion", "conowner", "true"),
    ("pg_ts_config", "cfgowner", "true"),
    ("pg_ts_dict", "dictowner", "true"),
    ("pg_foreign_data_wrapper", "fdwowner", "true"),
    ("pg_foreign_server", "srvowner", "true"),
    ("pg_event_trigger", "evtowner", "true"),
    ("pg_publication", "pubowner", "true"),
    ("pg_statistic_ext", "stxowner", "true"),
];

fn owners() -> String {
    OWNED
        .iter()
        .map(|(name, owner, filter)| {
            objects_of(
                name,
                &format!("'{OWNER_PREFIX}' || "),
                &format!("pg_catalog.pg_get_userbyid(x.{owner})::text"),
                filter,
            )
        })
        .collect::<Vec<_>>()
        .join("\nUNION ALL\n")
}

/// Catalogs with privileges: (catalog, ACL column, owner column, `acldefault` kind, which rows).
const GRANTABLE: [(&str, &str, &str, &str, &str); 7] = [
    (
        "pg_class",
        "relacl",
        "relowner",
        "CASE x.relkind WHEN 'S' THEN 's' ELSE 'r' END",
        "x.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND x.relpersistence <> 't'",
    ),
    ("pg_proc", "proacl", "proowner", "'f'", "true"),
    ("pg_type", "typacl", "typowner", "'T'", "x.typrelid = 0"),
    (
        "pg_namespace",
        "nspacl",
        "nspowner",
        "'n'",
        "x.nspname NOT LIKE 'pg\\_%'",
    ),
    (
        "pg_foreign_data_wrapper",
        "fdwacl",
        "fdwowner",
        "'F'",
        "true",
    ),
    ("pg_foreign_server", "srvacl", "srvowner", "'S'", "true"),
    ("pg_language", "lanacl", "lanowner", "'l'", "true"),
];

fn acls(user_namespace: &str, rel_not_ext: &str) -> String {
    let mut parts: Vec<String> = GRANTABLE
        .iter()
        .map(|(name, acl, owner, kind, filter)| {
            objects_of(
                name,
                "'privileges on ' || ",
                &privileges(&format!("x.{acl}"), kind, &format!("x.{owner}")),
                filter,
            )
        })
        .collect();
    parts.push(format!(
        "SELECT 'privileges on ' || pg_catalog.pg_describe_object(
                  'pg_catalog.pg_class'::pg_catalog.regclass, c.oid, a.attnum),
                {}
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
           AND {user_namespace} AND {rel_not_ext}",
        privileges("a.attacl", "'c'", "c.relowner")
    ));
    // Default privileges are stored as what they add to or remove from the defaults.
    parts.push(
        "SELECT pg_catalog.pg_describe_object('pg_catalog.pg_default_acl'::pg_catalog.regclass,
                  d.oid, 0), d.defaclacl::text
         FROM pg_catalog.pg_default_acl d"
            .to_string(),
    );
    parts.join("\nUNION ALL\n")
}
