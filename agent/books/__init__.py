"""The books: prices, money, each call's cost ledger, budgets, estimates and card payments.

Money is integer micro-dollars (`money`), priced from a versioned price book
(`pricing`); `costs` meters a call into its ledger, `budgets` reserves and
watches the limits, `estimate` prices a call before it starts, `billing` holds
and captures the card.
"""
