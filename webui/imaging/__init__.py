"""Pictures as data: uploads, masks, poses."""
