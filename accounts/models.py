# Guest accounts, retention policies and returning-guest sessions arrive with the guest journey.
