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
	// The limits flags set must be positive; those the binary leaves to
	// their defaults may be zero, not negative (what NewReplay and NewLive
	// check). One message per bad bound.
	if err := o.checkBounds(true); err != nil {
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
