// `sqlx::migrate!` embeds the migrations at compile time, and Cargo does not
// otherwise notice a new file in the directory: rebuild when it changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
