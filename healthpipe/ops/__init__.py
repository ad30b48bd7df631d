"""Operations tooling: the native stack, `check`, `status`, the demo app, config docs. Only the CLI imports it."""
