// Rebuild when a migration is added or changed: `sqlx::migrate!` embeds the directory at
// build time, and Cargo does not otherwise know to look at it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
