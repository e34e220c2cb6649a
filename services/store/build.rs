// `sqlx::migrate!` embeds the migrations at compile time but does not notice a new file:
// rebuild the store whenever the migrations change.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
