package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/mastership/mastership/config"
	"github.com/urfave/cli/v2"
)

// namingConfigFlags are the flags of `mastership naming`: -profile,
// -config and one flag per key of config.Naming, named after its file key
// with '-' for '_'. No flag has a Value, so that only the flags a user
// sets override the file and the environment.
func namingConfigFlags() []cli.Flag { return configFlags(config.NamingKeys()) }

// agentConfigFlags are the flags of `mastership agent`, built the same way.
func agentConfigFlags() []cli.Flag { return configFlags(config.AgentKeys()) }

func configFlags(keys []config.Key) []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{
			Name:        config.FlagProfile,
			Usage:       fmt.Sprintf("`PROFILE` of the defaults: %s [$%s]", strings.Join(config.Profiles(), ", "), config.EnvProfile),
			DefaultText: config.ProfileLAN,
		},
		&cli.StringFlag{
			Name:        config.FlagConfig,
			Usage:       fmt.Sprintf("JSON config `FILE`; keys are the flag names with '_' for '-' [$%s]", config.EnvConfig),
			DefaultText: "none",
			TakesFile:   true,
		},
	}
	for _, k := range keys {
		switch k.Kind {
		case config.KindBool:
			flags = append(flags, &cli.BoolFlag{Name: k.Flag, Usage: k.Usage, DefaultText: k.DefaultText})
		case config.KindList:
			flags = append(flags, &cli.StringSliceFlag{Name: k.Flag, Usage: k.Usage, DefaultText: k.DefaultText})
		default:
			flags = append(flags, &cli.StringFlag{Name: k.Flag, Usage: k.Usage, DefaultText: k.DefaultText})
		}
	}
	return flags
}

// namingFromCLI loads a validated Naming from the profile, the config
// file, the process environment and the flags set on c, in that order of
// precedence.
func namingFromCLI(c *cli.Context) (config.Naming, error) {
	return config.LoadNaming(sourcesFromCLI(c, os.Environ(), config.NamingKeys()))
}

// agentFromCLI loads a validated Agent the same way.
func agentFromCLI(c *cli.Context) (config.Agent, error) {
	return config.LoadAgent(sourcesFromCLI(c, os.Environ(), config.AgentKeys()))
}

// sourcesFromCLI collects the flags the user set on c. The environment is
// a parameter so that tests stay hermetic.
func sourcesFromCLI(c *cli.Context, env []string, keys []config.Key) config.Sources {
	s := config.Sources{Env: env, Flags: map[string]string{}}
	if c.IsSet(config.FlagProfile) {
		s.Profile = c.String(config.FlagProfile)
	}
	if c.IsSet(config.FlagConfig) {
		s.File = c.String(config.FlagConfig)
	}
	for _, k := range keys {
		if !c.IsSet(k.Flag) {
			continue
		}
		switch k.Kind {
		case config.KindBool:
			s.Flags[k.Flag] = strconv.FormatBool(c.Bool(k.Flag))
		case config.KindList:
			s.Flags[k.Flag] = strings.Join(c.StringSlice(k.Flag), ",")
		default:
			s.Flags[k.Flag] = c.String(k.Flag)
		}
	}
	return s
}
