//! Contract tests of the published records: schema validity over the whole report corpus,
//! schema and vocabulary agreement, schema documentation, id stability and `derive`.

mod derive;
mod ids;
mod privacy;
mod records;
mod schema;
mod support;
