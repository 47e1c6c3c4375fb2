fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(mailform::run(std::env::args_os()))
}
