package sensor

import (
	"errors"
	"fmt"
)

// minMemoryBudget is the smallest budget that still holds a flow table,
// reassembly pages and a few large messages.
const minMemoryBudget = 16 << 20

// Validate checks a configuration given explicitly (flags, a config file):
// every limit a flag sets must be positive, and the memory budget large
// enough to work in. The library takes zero as "the default" (NewReplay and
// NewLive only refuse negative values); a zero a user typed is an error
// here, never a silent default.
func (o *Options) Validate() error {
	var errs []error
	pos := func(name string, v int64) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %d", name, v))
		}
	}
	pos("max-message", int64(o.MaxMessage))
	pos("max-stub", int64(o.MaxStub))
	pos("max-calls", int64(o.MaxCalls))
	pos("max-files", int64(o.MaxFiles))
	pos("max-xml", int64(o.Tsch.XMLLimit))
	// Said in the units the flags take, not in nanoseconds and bytes.
	if o.IdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("idle-timeout must be positive, got %v", o.IdleTimeout))
	}
	if o.MemoryBudget <= 0 {
		errs = append(errs, fmt.Errorf("memory-budget must be positive, got %d MiB", o.MemoryBudget>>20))
	}
	// Limits the binary leaves to their defaults may be zero, not negative
	// (the check NewReplay and NewLive make).
	if err := o.validate(); err != nil {
		errs = append(errs, err)
	}
	if o.MemoryBudget > 0 && o.MemoryBudget < minMemoryBudget {
		errs = append(errs, fmt.Errorf("memory-budget %d bytes is below the %d MiB the sensor needs", o.MemoryBudget, minMemoryBudget>>20))
	}
	if o.MaxStub > 0 && o.MaxStub < stubTail {
		errs = append(errs, fmt.Errorf("max-stub %d is below %d bytes", o.MaxStub, stubTail))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("options: %w", err)
	}
	return nil
}
