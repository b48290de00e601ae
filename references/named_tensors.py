"""Named tensors in PhiML: the handful of operations this pipeline is built on. Run: python references/named_tensors.py"""

from phiml import math, nn
from phiml.math import batch, channel, spatial

# 1. Dim types. A cached trajectory: time is a batch dim (frames are independent samples for a network),
#    x and y are spatial (convolutions run over them), vector is a channel dim with item names.
v = math.random_normal(batch(time=5), spatial(x=8, y=8), channel(vector='x,y'))
assert v.shape.names == ('time', 'x', 'y', 'vector')
assert [d.dim_type for d in v.shape] == ['batch', 'spatial', 'spatial', 'channel']
assert v.shape.get_item_names('vector') == ('x', 'y')

# 2. Slicing by name, never by axis position.
assert v.time[2].shape.names == ('x', 'y', 'vector')  # one frame
assert v.time[1:3].shape.get_size('time') == 2  # a window
assert v.vector['x'].shape.names == ('time', 'x', 'y')  # one component by item name
assert v.x[0].shape.names == ('time', 'y', 'vector')  # a row

# 3. NumPy only at the edges, with an explicit dim order.
array = v.numpy('time,x,y,vector')
assert array.shape == (5, 8, 8, 2)
back = math.tensor(array, v.shape)
assert math.close(back, v)

# 4. Stacking samples into a batch: a new batch dim.
samples = [v.time[i] for i in range(3)]
b = math.stack(samples, batch('batch'))
assert b.shape.names == ('batch', 'x', 'y', 'vector')

# 5. A vectorised gather of windows: start frames per sample, a new index dim for the window.
traj = math.random_normal(batch(sim=4, time=10), spatial(x=8, y=8))
sim_idx = math.tensor([0, 3], batch('win'))
start = math.tensor([2, 5], batch('win'))
windows = traj[{'sim': sim_idx, 'time': start + math.range(batch(frame=3))}]
assert set(windows.shape.names) == {'win', 'frame', 'x', 'y'}
assert math.close(windows.win[1].frame[0], traj.sim[3].time[5])

# 6. native_call: batch dims merge into N, spatial dims stay, channel dims merge into C.
math.use('numpy')
state = math.random_normal(batch(batch=2), spatial(x=16, y=16), channel(channels='velocity.x,velocity.y'))
math.use('torch')
net = nn.conv_net(in_channels=2, out_channels=2, layers=[8])
out = math.native_call(net, math.tensor(state.numpy('batch,x,y,channels'), state.shape))
assert set(out.shape.names) == {'batch', 'x', 'y', 'vector'}  # the output channel dim is unnamed ('vector')
out = math.rename_dims(out, out.shape.channel, channel(channels='velocity.x,velocity.y'))
assert out.shape.get_item_names('channels') == ('velocity.x', 'velocity.y')
print('named_tensors: all checks passed')
