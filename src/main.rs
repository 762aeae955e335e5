fn main() -> std::process::ExitCode {
    pcsim::cli::main()
}
