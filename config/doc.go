// Package config holds the configuration of agents and naming nodes:
// defaults, profiles, validation, files, environment variables and flags.
package config
