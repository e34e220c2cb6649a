//! Compiles the `.proto` contracts with protox (pure Rust), so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = "../../proto";
    let files = [
        "hospital/records/v1/records.proto",
        "hospital/billing/v1/billing.proto",
        "hospital/telemedicine/v1/telemedicine.proto",
    ];
    let fds = protox::compile(files, [root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    for f in files {
        println!("cargo:rerun-if-changed={root}/{f}");
    }
    Ok(())
}
