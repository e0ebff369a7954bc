package tlsadapter

// builtinFactories are the adapters every Registry starts with.
func builtinFactories() map[string]Factory {
	return map[string]Factory{
		"none":     newNone,
		"builtin":  newBuiltin,
		"internal": newInternal,
		"acme":     newACME,
	}
}
